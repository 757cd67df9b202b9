"""Metric families, one file each: likelihood, sample quality (fid), sampling speed."""
