# etcd snapshot files: the SHA-256 trailer (used by Maintenance.Snapshot) and
# `synod snapshot restore` (snapshot_restore.h), which the synod binaries run. Neither needs the
# consensus core, so every member binary (built on the core or on a broken one) links them.
add_library(synod_etcd_snapshot_file etcd_snapshot_file.cc)
target_link_libraries(synod_etcd_snapshot_file PUBLIC synod_base PRIVATE OpenSSL::Crypto fmt::fmt)
target_link_libraries(synod_node_objects PUBLIC synod_etcd_snapshot_file)

add_library(synod_snapshot_restore snapshot_restore.cc)
target_link_libraries(synod_snapshot_restore
  PUBLIC synod_etcd_snapshot_file synod_server_config synod_members synod_storage synod_kv)
foreach(member_binary ${SYNOD_MEMBER_BINARIES})
  if(TARGET ${member_binary})
    target_link_libraries(${member_binary} PRIVATE synod_snapshot_restore)
  endif()
endforeach()

add_executable(snapshot_restore_test ${CMAKE_CURRENT_LIST_DIR}/snapshot_restore_test.cc)
target_link_libraries(snapshot_restore_test PRIVATE synod_snapshot_restore GTest::gtest_main)
gtest_discover_tests(snapshot_restore_test PROPERTIES LABELS unit)
