# etcd snapshot files: the SHA-256 trailer (used by Maintenance.Snapshot) and
# `synod snapshot restore` (snapshot_restore.h), which the synod binary runs.
target_sources(synod_node PRIVATE ${CMAKE_CURRENT_LIST_DIR}/etcd_snapshot_file.cc)

add_library(synod_snapshot_restore snapshot_restore.cc)
target_link_libraries(synod_snapshot_restore
  PUBLIC synod_node synod_server_config synod_members synod_storage)
target_link_libraries(synod PRIVATE synod_snapshot_restore)
if(TARGET synod-broken-forgets-data)
  target_link_libraries(synod-broken-forgets-data PRIVATE synod_snapshot_restore)
endif()

add_executable(snapshot_restore_test ${CMAKE_CURRENT_LIST_DIR}/snapshot_restore_test.cc)
target_link_libraries(snapshot_restore_test PRIVATE synod_snapshot_restore GTest::gtest_main)
gtest_discover_tests(snapshot_restore_test PROPERTIES LABELS unit)
