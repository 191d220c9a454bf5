# The RocksDB backend of the state machine (backend.h): part of synod_storage, with its own test.
target_sources(synod_storage PRIVATE ${CMAKE_CURRENT_LIST_DIR}/backend.cc)
# RocksDB stays a private dependency: backend.h declares only opaque RocksDB types.
target_link_libraries(synod_storage PRIVATE RocksDB::rocksdb-shared)

add_executable(backend_test ${CMAKE_CURRENT_LIST_DIR}/backend_test.cc)
target_link_libraries(backend_test PRIVATE synod_storage GTest::gtest_main)
gtest_discover_tests(backend_test PROPERTIES LABELS "unit;storage")
