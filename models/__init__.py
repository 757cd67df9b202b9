"""Model families, one file each, all behind the contract in `genbench.model`."""
