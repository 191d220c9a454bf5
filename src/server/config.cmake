# Flags, the data directory's identity, and the automatic compaction they configure.
find_package(OpenSSL REQUIRED)
add_library(synod_server_config config.cc data_dir.cc auto_compactor.cc)
target_link_libraries(synod_server_config
  PUBLIC synod_base PRIVATE synod_storage CLI11::CLI11 fmt::fmt OpenSSL::Crypto absl::time)
