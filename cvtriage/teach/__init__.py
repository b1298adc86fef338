"""Teach it your objects: reviewers' decisions on scan events become training labels (review -> harvest -> train -> rescan -> compare)."""
