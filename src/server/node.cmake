# The member's event loop and the client API services, and the synod binary. The objects are
# compiled once and linked with the Raft core (synod_node), or with a deliberately broken core.
# The engine adapters (consensus_engine.cc) link the Multi-Paxos core here; the Raft core is
# linked per binary, so that a deliberately broken Raft core can replace it.
add_library(synod_node_objects OBJECT node.cc consensus_engine.cc recipes.cc services.cc
  watch_service.cc worker_pool.cc)
target_link_libraries(synod_node_objects
  PUBLIC synod_kv synod_storage synod_raft_types synod_multipaxos_types synod_grpc synod_transport
    synod_members synod_server_config
    spdlog::spdlog
  PRIVATE RocksDB::rocksdb-shared OpenSSL::Crypto)
add_library(synod_node STATIC)
target_link_libraries(synod_node
  PUBLIC synod_node_objects synod_raft synod_multipaxos
  PRIVATE RocksDB::rocksdb-shared OpenSSL::Crypto)

add_executable(node_test node_test.cc)
target_link_libraries(node_test PRIVATE synod_node GTest::gtest_main)
gtest_discover_tests(node_test PROPERTIES LABELS unit)

add_executable(auto_compactor_test auto_compactor_test.cc)
target_link_libraries(auto_compactor_test PRIVATE synod_node GTest::gtest_main)
gtest_discover_tests(auto_compactor_test PROPERTIES LABELS unit)

add_executable(completion_test completion_test.cc)
target_link_libraries(completion_test PRIVATE synod_node GTest::gtest_main)
gtest_discover_tests(completion_test PROPERTIES LABELS unit)

add_executable(worker_pool_test worker_pool_test.cc)
target_link_libraries(worker_pool_test PRIVATE synod_node GTest::gtest_main)
gtest_discover_tests(worker_pool_test PROPERTIES LABELS unit)

add_executable(consensus_engine_test consensus_engine_test.cc)
target_link_libraries(consensus_engine_test PRIVATE synod_node GTest::gtest_main)
gtest_discover_tests(consensus_engine_test PROPERTIES LABELS unit)

add_executable(recipes_test recipes_test.cc)
target_link_libraries(recipes_test PRIVATE synod_node GTest::gtest_main)
gtest_discover_tests(recipes_test PROPERTIES LABELS unit)

add_executable(maintenance_test maintenance_test.cc)
target_link_libraries(maintenance_test PRIVATE synod_node GTest::gtest_main OpenSSL::Crypto)
gtest_discover_tests(maintenance_test PROPERTIES LABELS unit)

add_executable(synod main.cc)
target_link_libraries(synod PRIVATE synod_node synod_server_config absl::synchronization)
if(NOT SYNOD_SANITIZE)
  target_link_libraries(synod PRIVATE ${SYNOD_TCMALLOC_LIBRARY})
endif()

# A deliberately broken member that forgets its data at every start (as if its data dir were on
# a RAM disk); the kill -9 test must catch the lost acknowledged writes. Never used otherwise.
if(SYNOD_BUILD_BROKEN_VARIANTS)
  add_executable(synod-broken-forgets-data main.cc)
  target_compile_definitions(synod-broken-forgets-data PRIVATE SYNOD_BROKEN_FORGETS_DATA)
  target_link_libraries(synod-broken-forgets-data PRIVATE synod_node synod_server_config)

  # A member whose leader answers linearizable reads without confirming its leadership, on
  # either engine: Raft's from its commit index with no ReadIndex round (thesis 6.4), Multi-Paxos's
  # without a majority's confirmation of its ballot. A deposed leader serves stale reads; the
  # nemesis tests must catch it on both.
  add_library(synod_node_broken_read_without_quorum STATIC)
  target_link_libraries(synod_node_broken_read_without_quorum
    PUBLIC synod_node_objects synod_raft_broken_read_without_quorum
      synod_multipaxos_broken_read_without_quorum
    PRIVATE RocksDB::rocksdb-shared OpenSSL::Crypto)
  add_executable(synod-broken-read-without-quorum main.cc)
  target_link_libraries(synod-broken-read-without-quorum
    PRIVATE synod_node_broken_read_without_quorum synod_server_config)

  # A member that acknowledges before fsync: its log is written at once and synced at most once
  # a second (node.cc, SYNOD_BROKEN_ACKS_BEFORE_FSYNC), so a power cut loses what it acknowledged
  # last. kill -9 alone cannot show that (the page cache survives); the nemesis's powerloss fault
  # must catch it. Only node.cc is compiled again; every other object is the product's.
  add_library(synod_node_loop_broken_acks_before_fsync OBJECT node.cc)
  target_compile_definitions(synod_node_loop_broken_acks_before_fsync
    PRIVATE SYNOD_BROKEN_ACKS_BEFORE_FSYNC)
  # An object library linked to an object library takes its usage requirements, not its objects.
  target_link_libraries(synod_node_loop_broken_acks_before_fsync PRIVATE synod_node_objects)
  add_library(synod_node_broken_acks_before_fsync STATIC
    $<FILTER:$<TARGET_OBJECTS:synod_node_objects>,EXCLUDE,/node\.cc\.o$>
    $<TARGET_OBJECTS:synod_node_loop_broken_acks_before_fsync>)
  # What synod_node_objects links (above, and synod_etcd_snapshot_file in snapshot.cmake).
  target_link_libraries(synod_node_broken_acks_before_fsync
    PUBLIC synod_kv synod_storage synod_raft_types synod_multipaxos_types synod_grpc synod_transport
      synod_members spdlog::spdlog synod_etcd_snapshot_file synod_raft synod_multipaxos
    PRIVATE RocksDB::rocksdb-shared OpenSSL::Crypto)
  add_executable(synod-broken-acks-before-fsync main.cc)
  target_link_libraries(synod-broken-acks-before-fsync
    PRIVATE synod_node_broken_acks_before_fsync synod_server_config)
endif()

# Every binary built from main.cc (the product and its deliberately broken variants): the parts
# main.cc dispatches to besides the server (snapshot restore, the Paxos demo) link into each.
set(SYNOD_MEMBER_BINARIES synod synod-broken-forgets-data synod-broken-read-without-quorum
  synod-broken-acks-before-fsync)
