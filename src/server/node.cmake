# The member's event loop and the client API services, and the synod binary.
add_library(synod_node node.cc recipes.cc services.cc watch_service.cc)
target_link_libraries(synod_node
  PUBLIC synod_kv synod_storage synod_raft synod_grpc synod_transport synod_members spdlog::spdlog
  PRIVATE RocksDB::rocksdb-shared OpenSSL::Crypto)

add_executable(node_test node_test.cc)
target_link_libraries(node_test PRIVATE synod_node GTest::gtest_main)
gtest_discover_tests(node_test PROPERTIES LABELS unit)

add_executable(recipes_test recipes_test.cc)
target_link_libraries(recipes_test PRIVATE synod_node GTest::gtest_main)
gtest_discover_tests(recipes_test PROPERTIES LABELS unit)

add_executable(maintenance_test maintenance_test.cc)
target_link_libraries(maintenance_test PRIVATE synod_node GTest::gtest_main OpenSSL::Crypto)
gtest_discover_tests(maintenance_test PROPERTIES LABELS unit)

add_executable(synod main.cc)
target_link_libraries(synod PRIVATE synod_node synod_server_config)

# A deliberately broken member that forgets its data at every start (as if its data dir were on
# a RAM disk); the kill -9 test must catch the lost acknowledged writes. Never used otherwise.
if(SYNOD_BUILD_BROKEN_VARIANTS)
  add_executable(synod-broken-forgets-data main.cc)
  target_compile_definitions(synod-broken-forgets-data PRIVATE SYNOD_BROKEN_FORGETS_DATA)
  target_link_libraries(synod-broken-forgets-data PRIVATE synod_node synod_server_config)
endif()
