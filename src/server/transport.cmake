# The peer transport and the Raft message codec.
add_library(synod_transport transport.cc raft_codec.cc)
target_link_libraries(synod_transport
  PUBLIC synod_grpc synod_raft_types synod_base synod_server_config spdlog::spdlog Threads::Threads)
