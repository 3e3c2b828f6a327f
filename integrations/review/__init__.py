"""What reviewers need beside each report: the analysis message of the analysis topic (docs/SPEC.md §13)."""
