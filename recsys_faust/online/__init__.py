"""Online quality: which served answers users took, per model version, strategy and variant."""
