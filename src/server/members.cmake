# The cluster's member records: codec, etcd's checks of a change, and joining a running cluster.
add_library(synod_members members.cc)
target_link_libraries(synod_members
  PUBLIC synod_grpc synod_raft_types synod_base absl::status absl::statusor
  PRIVATE synod_transport fmt::fmt absl::strings)

add_executable(members_test members_test.cc)
target_link_libraries(members_test PRIVATE synod_members GTest::gtest_main)
gtest_discover_tests(members_test PROPERTIES LABELS unit)

# The node's and the services' membership parts live in files of their own (node_members.cc,
# cluster_service.cc) but belong to the node's objects; node.cmake is included before this file.
target_sources(synod_node_objects PRIVATE node_members.cc cluster_service.cc)

add_executable(node_members_test node_members_test.cc)
target_link_libraries(node_members_test PRIVATE synod_node GTest::gtest_main)
gtest_discover_tests(node_members_test PROPERTIES LABELS unit)
