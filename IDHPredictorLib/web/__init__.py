"""The browser front end (``idh-predictor web``): the Slicer module's workflow served by
trame-slicer, over the same ``scene_workflow``, MRML bridge and ``JobController``."""
