// BoltWriter -> BoltReader round trips, the writer's checks on its input, and the reader's
// refusal of damaged files. Where etcdctl 3.4 is installed, its `snapshot status` (which opens the
// file with bbolt itself and runs bbolt's Tx.Check: every page reachable exactly once) must
// accept what the writer wrote and count the same keys.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "storage/bolt_format.h"
#include "storage/bolt_reader.h"
#include "storage/bolt_writer.h"

namespace synod::storage {
namespace {

// What a database holds: bucket path ("a/b") -> key -> value; a bucket with no keys is present
// with an empty map.
using Contents = std::map<std::string, std::map<std::string, std::string>>;

class BoltTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("bolt_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "db").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  int OpenForWrite() {
    const int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    EXPECT_GE(fd, 0);
    return fd;
  }

  // Reads every bucket reachable from the root, recursively.
  Contents ReadAll(const BoltReader& reader) {
    Contents contents;
    std::vector<std::vector<std::string>> pending;
    EXPECT_TRUE(reader
                    .ForEach({},
                             [&](const BoltReader::Entry& entry) {
                               EXPECT_TRUE(entry.is_bucket);
                               pending.push_back({std::string(entry.key)});
                               return Status();
                             })
                    .ok());
    while (!pending.empty()) {
      std::vector<std::string> path = pending.back();
      pending.pop_back();
      std::string name;
      for (const std::string& part : path) name += (name.empty() ? "" : "/") + part;
      std::map<std::string, std::string>& keys = contents[name];
      std::string previous;
      Status status = reader.ForEach(path, [&](const BoltReader::Entry& entry) {
        EXPECT_LT(previous, std::string(entry.key)) << "keys out of order in " << name;
        previous = std::string(entry.key);
        if (entry.is_bucket) {
          std::vector<std::string> child = path;
          child.emplace_back(entry.key);
          pending.push_back(child);
        } else {
          keys.emplace(entry.key, entry.value);
        }
        return Status();
      });
      EXPECT_TRUE(status.ok()) << status;
    }
    return contents;
  }

  std::filesystem::path dir_;
  std::string path_;
};

std::string Key(int i) {
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "key%08d", i);
  return buffer;
}

// Runs etcdctl snapshot status on `path`; empty when etcdctl is not installed.
std::string EtcdctlStatus(const std::string& path) {
  if (!std::filesystem::exists("/usr/bin/etcdctl")) return "";
  const std::string command =
      "ETCDCTL_API=3 /usr/bin/etcdctl snapshot status -w json " + path + " 2>&1";
  std::FILE* pipe = ::popen(command.c_str(), "r");
  std::string output;
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) output.append(buffer, n);
  ::pclose(pipe);
  return output;
}

TEST_F(BoltTest, RoundTripOfManyKeysBigValuesManyAndEmptyBuckets) {
  Contents expected;
  const int fd = OpenForWrite();
  {
    BoltWriter writer(fd, path_);
    // 300 top-level buckets: the root bucket spans several pages under a branch page.
    for (int b = 0; b < 300; ++b) {
      char name[16];
      std::snprintf(name, sizeof name, "bucket%03d", b);
      ASSERT_TRUE(writer.BeginBucket(name).ok());
      auto& keys = expected[name];
      if (b == 7) {
        // Enough keys for a three-level tree (leaves, two levels of branches).
        for (int i = 0; i < 30000; ++i) {
          const std::string value = "value-" + std::to_string(i * 7919);
          ASSERT_TRUE(writer.Put(Key(i), value).ok());
          keys[Key(i)] = value;
        }
      } else if (b == 8) {
        // Values from just under a page to many pages: overflow pages, alone and beside small
        // neighbours; an empty value too.
        int i = 0;
        for (size_t size : {size_t{0}, size_t{10}, size_t{4000}, size_t{4100}, size_t{9000},
                            size_t{5}, size_t{100000}, size_t{3 << 20}, size_t{17}}) {
          std::string value(size, '\0');
          for (size_t j = 0; j < size; ++j) value[j] = static_cast<char>('a' + (j * 31 + i) % 26);
          ASSERT_TRUE(writer.Put(Key(i), value).ok());
          keys[Key(i)] = value;
          ++i;
        }
      } else if (b == 9) {
        // A nested bucket between keys, holding a nested bucket of its own and an empty one.
        ASSERT_TRUE(writer.Put("a", "1").ok());
        ASSERT_TRUE(writer.BeginBucket("b").ok());
        ASSERT_TRUE(writer.Put("inner", "2").ok());
        ASSERT_TRUE(writer.BeginBucket("innermost").ok());
        for (int i = 0; i < 500; ++i) {
          ASSERT_TRUE(writer.Put(Key(i), std::string(100, 'x')).ok());
          expected["bucket009/b/innermost"][Key(i)] = std::string(100, 'x');
        }
        ASSERT_TRUE(writer.EndBucket().ok());
        ASSERT_TRUE(writer.BeginBucket("other").ok());
        ASSERT_TRUE(writer.EndBucket().ok());
        ASSERT_TRUE(writer.EndBucket().ok());
        ASSERT_TRUE(writer.Put("c", "3").ok());
        keys = {{"a", "1"}, {"c", "3"}};
        expected["bucket009/b"] = {{"inner", "2"}};
        expected["bucket009/b/other"];
      } else if (b % 3 == 0) {
        // Empty buckets.
      } else {
        for (int i = 0; i < b % 17; ++i) {
          ASSERT_TRUE(writer.Put(Key(i), std::to_string(b)).ok());
          keys[Key(i)] = std::to_string(b);
        }
      }
      ASSERT_TRUE(writer.EndBucket().ok());
    }
    ASSERT_TRUE(writer.Finish().ok());
    EXPECT_EQ(std::filesystem::file_size(path_), writer.pages() * bolt::kPageBytes);
  }
  ::close(fd);

  auto reader = BoltReader::Open(path_);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->page_bytes(), bolt::kPageBytes);
  EXPECT_EQ(ReadAll(**reader), expected);
  EXPECT_TRUE(*(*reader)->HasBucket({"bucket009", "b", "other"}));
  EXPECT_FALSE(*(*reader)->HasBucket({"bucket009", "nothing"}));
  EXPECT_FALSE(*(*reader)->HasBucket({"bucket009", "a"}));  // A key, not a bucket.
  EXPECT_TRUE(absl::IsNotFound((*reader)->ForEach({"missing"}, [](auto&) { return Status(); })));

  // bbolt itself: etcdctl counts every key of every top-level bucket, nested buckets included
  // as keys (Bucket.ForEach), and its integrity check must find no unreachable page.
  const std::string status = EtcdctlStatus(path_);
  if (status.empty()) GTEST_SKIP() << "etcdctl not installed";
  size_t total_keys = 0;
  for (const auto& [bucket, keys] : expected) {
    if (bucket.find('/') == std::string::npos) total_keys += keys.size();
  }
  total_keys += 1;  // bucket009's nested bucket "b".
  EXPECT_NE(status.find("\"totalKey\":" + std::to_string(total_keys)), std::string::npos) << status;
}

TEST_F(BoltTest, AnEmptyDatabaseIsValid) {
  const int fd = OpenForWrite();
  BoltWriter writer(fd, path_);
  ASSERT_TRUE(writer.Finish().ok());
  ::close(fd);
  EXPECT_EQ(writer.pages(), 4u);  // Two metas, the freelist, the root bucket's empty leaf.
  auto reader = BoltReader::Open(path_);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_TRUE(ReadAll(**reader).empty());
  const std::string status = EtcdctlStatus(path_);
  if (!status.empty()) {
    EXPECT_NE(status.find("\"totalKey\":0"), std::string::npos) << status;
  }
}

// The etcdctl check above must be able to fail: a page that no tree reaches (a writer that
// miscounted its pages) is what bbolt's Tx.Check reports, though our reader would not notice.
TEST_F(BoltTest, BboltsCheckCatchesAnUnreachablePage) {
  const int fd = OpenForWrite();
  BoltWriter writer(fd, path_);
  ASSERT_TRUE(writer.BeginBucket("b").ok());
  ASSERT_TRUE(writer.Put("k", "v").ok());
  ASSERT_TRUE(writer.EndBucket().ok());
  ASSERT_TRUE(writer.Finish().ok());
  ::close(fd);
  if (EtcdctlStatus(path_).find("\"totalKey\":1") == std::string::npos) {
    GTEST_SKIP() << "etcdctl not installed";
  }
  // One more page, counted by both metas (checksums recomputed) but part of no tree.
  const uint64_t pages = writer.pages() + 1;
  std::filesystem::resize_file(path_, pages * bolt::kPageBytes);
  {
    std::fstream file(path_, std::ios::in | std::ios::out | std::ios::binary);
    for (uint64_t meta_page : {0, 1}) {
      const std::streamoff meta_at = meta_page * bolt::kPageBytes + bolt::kPageHeaderBytes;
      std::string meta(bolt::kMetaBytes, '\0');
      file.seekg(meta_at);
      file.read(meta.data(), static_cast<std::streamsize>(meta.size()));
      bolt::PutLe(&meta[40], pages, 8);
      bolt::PutLe(&meta[bolt::kMetaChecksumOffset],
                  bolt::MetaChecksum(std::string_view(meta).substr(0, bolt::kMetaChecksumOffset)),
                  8);
      file.seekp(meta_at);
      file.write(meta.data(), static_cast<std::streamsize>(meta.size()));
    }
  }
  auto reader = BoltReader::Open(path_);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ(ReadAll(**reader).size(), 1u);
  const std::string status = EtcdctlStatus(path_);
  EXPECT_NE(status.find("unreachable unfreed"), std::string::npos) << status;
}

// bbolt stores a small bucket inline: root 0 in its header, its one leaf page inside the value
// (bucket.go openBucket). The writer never does, but etcd's files are full of them.
TEST_F(BoltTest, ReadsInlineBuckets) {
  const std::vector<std::pair<std::string, std::string>> inline_keys = {{"x", "1"}, {"yy", "22"}};
  std::string value(bolt::kBucketHeaderBytes + bolt::kPageHeaderBytes +
                        inline_keys.size() * bolt::kLeafElementBytes,
                    '\0');  // Bucket header: root 0, sequence 0.
  char* page = &value[bolt::kBucketHeaderBytes];
  bolt::PutLe(page + 8, bolt::kLeafPageFlag, 2);
  bolt::PutLe(page + 10, inline_keys.size(), 2);
  size_t data_at = bolt::kPageHeaderBytes + inline_keys.size() * bolt::kLeafElementBytes;
  std::string data;
  for (size_t i = 0; i < inline_keys.size(); ++i) {
    char* element = page + bolt::kPageHeaderBytes + i * bolt::kLeafElementBytes;
    const size_t element_at = bolt::kPageHeaderBytes + i * bolt::kLeafElementBytes;
    bolt::PutLe(element + 4, data_at + data.size() - element_at, 4);
    bolt::PutLe(element + 8, inline_keys[i].first.size(), 4);
    bolt::PutLe(element + 12, inline_keys[i].second.size(), 4);
    data += inline_keys[i].first + inline_keys[i].second;
  }
  value += data;

  const int fd = OpenForWrite();
  BoltWriter writer(fd, path_);
  ASSERT_TRUE(writer.BeginBucket("outer").ok());
  ASSERT_TRUE(writer.Put("inline", value).ok());
  ASSERT_TRUE(writer.Put("plain", "p").ok());
  ASSERT_TRUE(writer.EndBucket().ok());
  ASSERT_TRUE(writer.Finish().ok());
  ::close(fd);
  // Page 3 is outer's leaf; mark its first element ("inline") as a bucket.
  {
    std::fstream file(path_, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(3 * bolt::kPageBytes + bolt::kPageHeaderBytes);
    file.put(static_cast<char>(bolt::kBucketLeafFlag));
  }
  auto reader = BoltReader::Open(path_);
  ASSERT_TRUE(reader.ok()) << reader.status();
  Contents expected;
  expected["outer"] = {{"plain", "p"}};
  expected["outer/inline"] = {inline_keys.begin(), inline_keys.end()};
  EXPECT_EQ(ReadAll(**reader), expected);
}

TEST_F(BoltTest, WriterRefusesUnorderedKeysAndKeysInTheRootBucket) {
  const int fd = OpenForWrite();
  {
    BoltWriter writer(fd, path_);
    EXPECT_TRUE(absl::IsInvalidArgument(writer.Put("k", "v")));  // Root bucket.
  }
  {
    BoltWriter writer(fd, path_);
    ASSERT_TRUE(writer.BeginBucket("b").ok());
    ASSERT_TRUE(writer.Put("k2", "v").ok());
    EXPECT_TRUE(absl::IsInvalidArgument(writer.Put("k1", "v")));
    // Errors are final.
    EXPECT_TRUE(absl::IsInvalidArgument(writer.Put("k3", "v")));
  }
  {
    BoltWriter writer(fd, path_);
    ASSERT_TRUE(writer.BeginBucket("b").ok());
    EXPECT_TRUE(absl::IsInvalidArgument(writer.Put("", "v")));
  }
  {
    BoltWriter writer(fd, path_);
    ASSERT_TRUE(writer.BeginBucket("b").ok());
    ASSERT_TRUE(writer.EndBucket().ok());
    EXPECT_TRUE(absl::IsInvalidArgument(writer.BeginBucket("a")));
  }
  {
    BoltWriter writer(fd, path_);
    ASSERT_TRUE(writer.BeginBucket("b").ok());
    EXPECT_TRUE(absl::IsFailedPrecondition(writer.Finish()));
  }
  ::close(fd);
}

class DamagedBoltTest : public BoltTest {
 protected:
  void SetUp() override {
    BoltTest::SetUp();
    const int fd = OpenForWrite();
    BoltWriter writer(fd, path_);
    ASSERT_TRUE(writer.BeginBucket("b").ok());
    for (int i = 0; i < 1000; ++i) ASSERT_TRUE(writer.Put(Key(i), "value").ok());
    ASSERT_TRUE(writer.EndBucket().ok());
    ASSERT_TRUE(writer.Finish().ok());
    ::close(fd);
  }
  void FlipByte(size_t offset) {
    std::fstream file(path_, std::ios::in | std::ios::out | std::ios::binary);
    file.seekg(static_cast<std::streamoff>(offset));
    char byte = 0;
    file.read(&byte, 1);
    byte = static_cast<char>(byte ^ 0x5a);
    file.seekp(static_cast<std::streamoff>(offset));
    file.write(&byte, 1);
  }
  size_t CountKeys() {
    auto reader = BoltReader::Open(path_);
    EXPECT_TRUE(reader.ok()) << reader.status();
    if (!reader.ok()) return 0;
    size_t keys = 0;
    EXPECT_TRUE((*reader)
                    ->ForEach({"b"},
                              [&](auto&) {
                                ++keys;
                                return Status();
                              })
                    .ok());
    return keys;
  }
  static constexpr size_t kMetaChecksumAt = bolt::kPageHeaderBytes + bolt::kMetaChecksumOffset;
};

TEST_F(DamagedBoltTest, ACorruptedNewerMetaFallsBackToTheOlderOneAsBboltDoes) {
  FlipByte(bolt::kPageBytes + kMetaChecksumAt);  // Meta 1, txid 1.
  auto reader = BoltReader::Open(path_);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->txid(), 0u);
  EXPECT_EQ(CountKeys(), 1000u);
}

TEST_F(DamagedBoltTest, CorruptedChecksumsInBothMetasAreRefused) {
  FlipByte(kMetaChecksumAt);
  FlipByte(bolt::kPageBytes + kMetaChecksumAt);
  auto reader = BoltReader::Open(path_);
  ASSERT_TRUE(absl::IsDataLoss(reader.status())) << reader.status();
  EXPECT_NE(reader.status().message().find("meta"), std::string_view::npos);
}

TEST_F(DamagedBoltTest, AMetaFieldChangedUnderItsChecksumIsRefused) {
  // The root page id of both metas: the checksum no longer matches.
  FlipByte(bolt::kPageHeaderBytes + 16);
  FlipByte(bolt::kPageBytes + bolt::kPageHeaderBytes + 16);
  EXPECT_TRUE(absl::IsDataLoss(BoltReader::Open(path_).status()));
}

TEST_F(DamagedBoltTest, ADamagedTreePageIsDataLossNotACrash) {
  // Page 3 is the bucket's first leaf; its header's page id no longer matches.
  auto walk = [&] {
    auto reader = BoltReader::Open(path_);
    EXPECT_TRUE(reader.ok());
    return reader.ok() ? (*reader)->ForEach({"b"}, [](auto&) { return Status(); })
                       : reader.status();
  };
  FlipByte(3 * bolt::kPageBytes);
  Status status = walk();
  EXPECT_TRUE(absl::IsDataLoss(status)) << status;
  // An element pointing past its page.
  FlipByte(3 * bolt::kPageBytes);
  ASSERT_TRUE(walk().ok());
  FlipByte(3 * bolt::kPageBytes + bolt::kPageHeaderBytes + 7);
  status = walk();
  EXPECT_TRUE(absl::IsDataLoss(status)) << status;
}

TEST_F(DamagedBoltTest, ATruncatedFileIsRefused) {
  std::filesystem::resize_file(path_, 3 * bolt::kPageBytes);
  EXPECT_TRUE(absl::IsDataLoss(BoltReader::Open(path_).status()));
}

}  // namespace
}  // namespace synod::storage
