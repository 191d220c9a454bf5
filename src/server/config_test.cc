// The member's flags behave as etcd's (names, both syntaxes, defaults, the checks etcd makes and
// its messages, the ids it derives), and the data dir's identity keeps members apart.

#include "server/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "server/data_dir.h"

namespace synod::server {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

Result<ServerConfig> Parse(std::vector<std::string> arguments) {
  arguments.insert(arguments.begin(), "synod");
  std::vector<const char*> argv;
  for (const std::string& argument : arguments) argv.push_back(argument.c_str());
  return ParseFlags(static_cast<int>(argv.size()), argv.data());
}

void ExpectInvalid(std::vector<std::string> arguments, const std::string& message) {
  auto config = Parse(arguments);
  ASSERT_FALSE(config.ok()) << "accepted: " << ::testing::PrintToString(arguments);
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(config.status().message()), HasSubstr(message));
}

TEST(ConfigTest, NoFlagsGiveEtcdsDefaultsAndEtcdsDefaultMemberId) {
  auto config = Parse({});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->name, "default");
  EXPECT_EQ(config->data_dir, "default.synod");
  ASSERT_EQ(config->listen_client_urls.size(), 1u);
  EXPECT_EQ(config->listen_client_urls[0].ToString(), "http://localhost:2379");
  EXPECT_EQ(config->listen_client_urls[0].HostPort(), "127.0.0.1:2379");
  EXPECT_EQ(config->listen_peer_urls[0].ToString(), "http://localhost:2380");
  EXPECT_EQ(config->heartbeat_interval_ms, 100u);
  EXPECT_EQ(config->election_timeout_ms, 1000u);
  EXPECT_EQ(config->snapshot_count, 100000u);
  EXPECT_EQ(config->max_request_bytes, 1572864u);
  EXPECT_EQ(config->initial_cluster_state, ServerConfig::ClusterState::kNew);
  // etcd's member id for "default=http://localhost:2380" with token "etcd-cluster".
  EXPECT_EQ(config->member_id, NodeId(0x8e9e05c52164694dULL));
  EXPECT_FALSE(config->print_and_exit.has_value());
}

TEST(ConfigTest, FlagsParseInEverySyntaxGoAccepts) {
  for (const std::vector<std::string>& arguments :
       {std::vector<std::string>{"--name", "m1", "--heartbeat-interval", "50"},
        std::vector<std::string>{"--name=m1", "--heartbeat-interval=50"},
        std::vector<std::string>{"-name", "m1", "-heartbeat-interval", "50"}}) {
    auto config = Parse(arguments);
    ASSERT_TRUE(config.ok()) << config.status();
    EXPECT_EQ(config->name, "m1");
    EXPECT_EQ(config->data_dir, "m1.synod");
    EXPECT_EQ(config->heartbeat_interval_ms, 50u);
  }
}

// Go's flag package: a repeated flag's last value wins, for plain and for list-valued flags.
TEST(ConfigTest, RepeatedFlagTakesItsLastValueAsInGo) {
  auto config = Parse({"--name", "first", "--heartbeat-interval=20", "-name", "second",
                       "--listen-client-urls", "http://127.0.0.1:1111", "--listen-client-urls",
                       "http://127.0.0.1:2222,http://127.0.0.1:3333", "--heartbeat-interval", "40"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->name, "second");
  EXPECT_EQ(config->heartbeat_interval_ms, 40u);
  ASSERT_EQ(config->listen_client_urls.size(), 2u);
  EXPECT_EQ(config->listen_client_urls[0].HostPort(), "127.0.0.1:2222");
  EXPECT_EQ(config->listen_client_urls[1].HostPort(), "127.0.0.1:3333");
}

// etcd disables the space quota for a negative --quota-backend-bytes rather than refusing it.
TEST(ConfigTest, AutoCompactionFlagsAsEtcdTakesThem) {
  EXPECT_FALSE(Parse({})->auto_compaction.has_value());  // Off by default, as in etcd.
  auto periodic = Parse({"--auto-compaction-retention=1"});
  ASSERT_TRUE(periodic.ok() && periodic->auto_compaction.has_value());
  EXPECT_EQ(periodic->auto_compaction->mode, AutoCompactionPolicy::Mode::kPeriodic);
  EXPECT_EQ(periodic->auto_compaction->retention_ms, 3600 * 1000);
  auto revision =
      Parse({"--auto-compaction-mode", "revision", "--auto-compaction-retention", "10000"});
  ASSERT_TRUE(revision.ok() && revision->auto_compaction.has_value());
  EXPECT_EQ(revision->auto_compaction->retention_revisions, 10000);
  ExpectInvalid({"--auto-compaction-mode=weekly", "--auto-compaction-retention=1"},
                "unknown auto-compaction-mode \"weekly\"");
}

TEST(ConfigTest, NegativeQuotaMeansNoQuota) {
  auto config = Parse({"--quota-backend-bytes=-1"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->quota_backend_bytes, -1);
}

// A Go bool flag: on by default, turned off only by "=false" (a separate "false" would be an
// argument, not the flag's value).
TEST(ConfigTest, InitialElectionTickAdvanceIsOnUnlessSetToFalse) {
  EXPECT_TRUE(Parse({})->initial_election_tick_advance);
  EXPECT_TRUE(Parse({"--initial-election-tick-advance"})->initial_election_tick_advance);
  EXPECT_FALSE(Parse({"--initial-election-tick-advance=false"})->initial_election_tick_advance);
  EXPECT_TRUE(Parse({"-initial-election-tick-advance=true"})->initial_election_tick_advance);
}

TEST(ConfigTest, WatchProgressIntervalTakesGoDurations) {
  EXPECT_EQ(Parse({})->watch_progress_notify_interval, std::chrono::minutes(10));
  EXPECT_EQ(Parse({"--experimental-watch-progress-notify-interval", "1m30s"})
                ->watch_progress_notify_interval,
            std::chrono::seconds(90));
  EXPECT_EQ(Parse({"--experimental-watch-progress-notify-interval=250ms"})
                ->watch_progress_notify_interval,
            std::chrono::milliseconds(250));
  ExpectInvalid({"--experimental-watch-progress-notify-interval", "10"}, "positive duration");
  ExpectInvalid({"--experimental-watch-progress-notify-interval", "-1s"}, "positive duration");
}

TEST(ConfigTest, ThreeMembersAgreeOnTheClusterIdAndDifferInMemberIds) {
  const std::string cluster =
      "a=http://127.0.0.1:2380,b=http://127.0.0.1:12380,c=http://127.0.0.1:22380";
  std::vector<ServerConfig> configs;
  for (const auto& [name, port] : {std::pair{"a", "2380"}, {"b", "12380"}, {"c", "22380"}}) {
    auto config = Parse({"--name", name, "--initial-cluster", cluster,
                         "--initial-advertise-peer-urls", std::string("http://127.0.0.1:") + port});
    ASSERT_TRUE(config.ok()) << config.status();
    configs.push_back(*config);
  }
  EXPECT_EQ(configs[0].cluster_id, configs[1].cluster_id);
  EXPECT_EQ(configs[1].cluster_id, configs[2].cluster_id);
  EXPECT_NE(configs[0].member_id, configs[1].member_id);
  EXPECT_NE(configs[1].member_id, configs[2].member_id);
  ASSERT_EQ(configs[0].initial_member_ids.size(), 3u);
  EXPECT_EQ(configs[0].initial_member_ids[1].first, configs[1].member_id);
  EXPECT_EQ(configs[0].initial_member_ids[2].second.name, "c");
  // Another token is another cluster.
  auto other = Parse({"--name", "a", "--initial-cluster", cluster, "--initial-advertise-peer-urls",
                      "http://127.0.0.1:2380", "--initial-cluster-token", "other"});
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->cluster_id, configs[0].cluster_id);
}

TEST(ConfigTest, InvalidConfigurationIsRejectedWithEtcdsMessages) {
  ExpectInvalid({"--election-timeout", "400"},
                "--election-timeout[400ms] should be at least as 5 times as "
                "--heartbeat-interval[100ms]");
  ExpectInvalid({"--election-timeout", "60000"}, "is too long");
  ExpectInvalid({"--initial-cluster", "other=http://localhost:2380"},
                "couldn't find local name \"default\"");
  ExpectInvalid({"--initial-cluster", "default=http://localhost:9999"},
                "missing from --initial-advertise-peer-urls");
  // A name listed twice is one member with two URLs (as in etcd); a URL listed twice is an error.
  ExpectInvalid({"--initial-cluster", "default=http://localhost:2380,default=http://x:1"},
                "missing from --initial-advertise-peer-urls");
  ExpectInvalid({"--initial-cluster", "default=http://localhost:2380,b=http://localhost:2380"},
                "duplicate url");
  ExpectInvalid({"--listen-client-urls", "https://127.0.0.1:2379"}, "TLS is not supported");
  ExpectInvalid({"--listen-client-urls", "http://127.0.0.1"}, "port");
  ExpectInvalid({"--no-such-flag", "1"}, "no-such-flag");
  ExpectInvalid({"--initial-cluster-state", "maybe"}, "want new or existing");
  ExpectInvalid({"--log-level", "loud"}, "--log-level");
  ExpectInvalid({"--heartbeat-interval", "abc"}, "heartbeat-interval");
}

TEST(ConfigTest, HelpAndVersionAskToPrintAndExit) {
  auto help = Parse({"--help"});
  ASSERT_TRUE(help.ok());
  ASSERT_TRUE(help->print_and_exit.has_value());
  EXPECT_THAT(*help->print_and_exit, HasSubstr("--initial-cluster"));
  EXPECT_THAT(*help->print_and_exit, HasSubstr("synod snapshot restore FILE"));
  auto version = Parse({"--version"});
  ASSERT_TRUE(version.ok());
  EXPECT_THAT(version->print_and_exit.value_or(""), HasSubstr(kEtcdCompatibleVersion));
}

class DataDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("synod_data_dir_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  ServerConfig Config(const std::string& token = "etcd-cluster",
                      const std::string& engine = "raft") {
    auto config = Parse(
        {"--data-dir", dir_.string(), "--initial-cluster-token", token, "--engine", engine});
    EXPECT_TRUE(config.ok()) << config.status();
    return *config;
  }

  static std::string ReadFile(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream contents;
    contents << in.rdbuf();
    return contents.str();
  }

  std::filesystem::path dir_;
};

TEST_F(DataDirTest, ANewDirGetsAnIdentityThatLaterStartsFind) {
  auto opened = OpenDataDir(Config());
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_FALSE(opened->existed);
  EXPECT_TRUE(std::filesystem::exists(dir_ / "member" / "identity"));
  EXPECT_EQ(opened->wal_dir, (dir_ / "member" / "wal").string());
  auto again = OpenDataDir(Config());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->existed);
  EXPECT_EQ(again->identity.member_id, Config().member_id);
}

TEST_F(DataDirTest, ADirOfAnotherClusterIsRefusedAndLeftUntouched) {
  ASSERT_TRUE(OpenDataDir(Config()).ok());
  const std::string before = ReadFile(dir_ / "member" / "identity");
  auto other = OpenDataDir(Config("another-token"));
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(other.status().message()), HasSubstr("belongs to member"));
  EXPECT_EQ(ReadFile(dir_ / "member" / "identity"), before);
}

TEST_F(DataDirTest, ADamagedIdentityIsDataLossNamingTheFile) {
  ASSERT_TRUE(OpenDataDir(Config()).ok());
  const std::filesystem::path path = dir_ / "member" / "identity";
  std::string contents = ReadFile(path);
  contents[contents.find("member ") + 8] ^= 1;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << contents;
  auto opened = OpenDataDir(Config());
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(opened.status().message()), HasSubstr(path.string()));
}

// Issue 7 part 3: the engine is fixed when the data dir is created; a start with the other
// engine is refused, naming both and the dir, and touches nothing.
TEST_F(DataDirTest, ADirOfTheOtherEngineIsRefusedAndLeftUntouched) {
  auto created = OpenDataDir(Config("etcd-cluster", "multipaxos"));
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->engine, EngineKind::kMultiPaxos);
  const std::string identity = ReadFile(dir_ / "member" / "identity");
  const std::string engine = ReadFile(dir_ / "member" / "engine");
  auto as_raft = OpenDataDir(Config("etcd-cluster", "raft"));
  ASSERT_FALSE(as_raft.ok());
  EXPECT_EQ(as_raft.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(as_raft.status().message()),
              AllOf(HasSubstr(dir_.string()), HasSubstr("created by the multipaxos engine"),
                    HasSubstr("--engine raft")));
  EXPECT_EQ(ReadFile(dir_ / "member" / "identity"), identity);
  EXPECT_EQ(ReadFile(dir_ / "member" / "engine"), engine);
  auto again = OpenDataDir(Config("etcd-cluster", "multipaxos"));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->engine, EngineKind::kMultiPaxos);
}

// A data dir made before engines were recorded has no engine file: it is a Raft one.
TEST_F(DataDirTest, ADirWithoutAnEngineRecordIsRaft) {
  ASSERT_TRUE(OpenDataDir(Config()).ok());
  std::filesystem::remove(dir_ / "member" / "engine");
  auto as_raft = OpenDataDir(Config());
  ASSERT_TRUE(as_raft.ok()) << as_raft.status();
  EXPECT_EQ(as_raft->engine, EngineKind::kRaft);
  auto as_multipaxos = OpenDataDir(Config("etcd-cluster", "multipaxos"));
  ASSERT_FALSE(as_multipaxos.ok());
  EXPECT_THAT(std::string(as_multipaxos.status().message()), HasSubstr("created by the raft"));
}

TEST(EngineFlagTest, UnknownEngineIsRefusedAndEitherEngineMayJoin) {
  auto unknown = Parse({"--engine", "zab"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(std::string(unknown.status().message()), HasSubstr("--engine"));
  auto joining = Parse({"--engine", "multipaxos", "--initial-cluster-state", "existing"});
  ASSERT_TRUE(joining.ok()) << joining.status();
  EXPECT_EQ(joining->engine, EngineKind::kMultiPaxos);
  EXPECT_EQ(joining->initial_cluster_state, ServerConfig::ClusterState::kExisting);
  auto defaulted = Parse({});
  ASSERT_TRUE(defaulted.ok());
  EXPECT_EQ(defaulted->engine, EngineKind::kRaft);
}

}  // namespace
}  // namespace synod::server
