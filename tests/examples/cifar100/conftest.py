"""cifar100 fixtures: a small synthetic run configuration."""

SMALL_RUN = ["--synthetic", "--epochs", "1", "--synthetic-size", "200", "--embedding-size", "32"]
