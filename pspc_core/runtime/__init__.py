"""The small runtime every command shares: files written whole or not at all (`atomic`), long work in
resumable batches (`batches`), sharding across processes under torchrun (`distributed`), progress on stderr
(`progress`) and PNG grids of images (`images`)."""
