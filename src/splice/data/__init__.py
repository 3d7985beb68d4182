"""The data layer: the data set reader, evaluation, mining, the git runner and safe file writes."""
