"""Reading and validating cases, DSC series and cohorts; all-or-nothing writing."""
