"""The review dashboard (docs/SPEC.md §13): its own store (store/) and its web app (web/). Research use only."""
