"""Deep-learning radiomics (Li et al. 2017): deep descriptors, Fisher vectors, selection, SVM."""
