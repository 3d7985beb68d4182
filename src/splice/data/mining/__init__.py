"""Mining merge conflicts from git histories into the data set's shards."""
