// synod-storage-bench: appended entries per second and entries per fsync for concurrent
// proposers, for the two candidate Raft log engines (issue 3 asks for the choice to be made
// by measurement):
//   wal      Synod's own segmented write-ahead log (storage/wal.h): one write + fdatasync per
//            group.
//   rocksdb  RocksDB as the log: one WriteBatch per group, written with sync=true.
// Both run behind the same LogWriter (group commit on a storage thread). Each proposer
// submits one entry, waits until it is durable, and submits the next, as a client waiting for
// its write would.
//
//   synod-storage-bench --engine both --proposers 1,16,256 --seconds 5 --dir /var/tmp/bench

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include "base/assert.h"
#include "storage/codec.h"
#include "storage/log_writer.h"
#include "storage/wal.h"

namespace synod {
namespace {

using storage::LogWrite;

// Gives every entry of a group its index in queue order, as the Raft leader would.
void AssignIndexes(std::vector<LogWrite>& group, uint64_t* next_index) {
  for (LogWrite& write : group) {
    for (raft::Entry& entry : write.entries) entry.index = Index((*next_index)++);
  }
}

std::unique_ptr<storage::LogWriter> OpenWalEngine(const std::string& directory,
                                                  std::unique_ptr<storage::FileSystem>* fs,
                                                  std::unique_ptr<storage::Wal>* wal) {
  *fs = storage::NewPosixFileSystem();
  storage::WalOptions options{directory + "/wal"};
  auto created = storage::Wal::Create(fs->get(), options, raft::SnapshotMeta{});
  SYNOD_ASSERT_MSG(created.ok(), "{}", created.status().ToString());
  *wal = std::move(*created);
  auto next_index = std::make_shared<uint64_t>(1);
  storage::Wal* log = wal->get();
  return std::make_unique<storage::LogWriter>([log, next_index](std::vector<LogWrite>& group) {
    AssignIndexes(group, next_index.get());
    for (LogWrite& write : group) log->Append(write.entries);
    return log->Sync();
  });
}

std::unique_ptr<storage::LogWriter> OpenRocksEngine(const std::string& directory,
                                                    std::unique_ptr<rocksdb::DB>* db) {
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  const rocksdb::Status status = rocksdb::DB::Open(options, directory + "/rocksdb", &raw);
  SYNOD_ASSERT_MSG(status.ok(), "{}", status.ToString());
  db->reset(raw);
  auto next_index = std::make_shared<uint64_t>(1);
  return std::make_unique<storage::LogWriter>([raw, next_index](std::vector<LogWrite>& group) {
    AssignIndexes(group, next_index.get());
    rocksdb::WriteBatch batch;
    std::string key, value;
    for (const LogWrite& write : group) {
      for (const raft::Entry& entry : write.entries) {
        key.clear();
        // Big-endian, so the keys sort by index.
        for (int shift = 56; shift >= 0; shift -= 8) {
          key.push_back(static_cast<char>(entry.index.value() >> shift));
        }
        value.clear();
        storage::EncodeEntry(entry, &value);
        batch.Put(key, value);
      }
    }
    rocksdb::WriteOptions write_options;
    write_options.sync = true;
    const rocksdb::Status written = raw->Write(write_options, &batch);
    return written.ok() ? absl::OkStatus() : absl::InternalError(written.ToString());
  });
}

struct Measurement {
  uint64_t entries = 0;
  uint64_t fsyncs = 0;
  double seconds = 0;
};

Measurement Run(storage::LogWriter& writer, int proposers, double seconds, size_t value_bytes) {
  std::atomic<bool> stop = false;
  const storage::LogWriter::Stats before = writer.stats();
  std::vector<std::thread> threads;
  const auto start = std::chrono::steady_clock::now();
  for (int p = 0; p < proposers; ++p) {
    threads.emplace_back([&, p] {
      std::mutex mutex;
      std::condition_variable durable;
      const std::string value(value_bytes, static_cast<char>('a' + p % 26));
      while (!stop.load(std::memory_order_relaxed)) {
        bool done = false;
        LogWrite write;
        write.entries.push_back(raft::Entry{Term(1), Index(0), raft::EntryType::kNormal, value, {}});
        writer.Submit(std::move(write), [&](Status status) {
          SYNOD_ASSERT_MSG(status.ok(), "{}", status.ToString());
          std::lock_guard lock(mutex);
          done = true;
          durable.notify_one();
        });
        std::unique_lock lock(mutex);
        durable.wait(lock, [&] { return done; });
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (std::thread& thread : threads) thread.join();
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const storage::LogWriter::Stats after = writer.stats();
  return Measurement{after.entries - before.entries, after.groups - before.groups, elapsed};
}

std::vector<int> ParseList(const std::string& text) {
  std::vector<int> values;
  size_t position = 0;
  while (position <= text.size()) {
    const size_t comma = text.find(',', position);
    values.push_back(std::stoi(text.substr(position, comma - position)));
    if (comma == std::string::npos) break;
    position = comma + 1;
  }
  return values;
}

}  // namespace
}  // namespace synod

int main(int argc, char** argv) {
  CLI::App app{"Append throughput and entries per fsync of the Raft log engines"};
  std::string engine = "both";
  std::string proposers_text = "1,16,256";
  double seconds = 5;
  size_t value_bytes = 256;
  std::string directory = "/var/tmp/synod-storage-bench";
  app.add_option("--engine", engine, "wal, rocksdb or both")
      ->check(CLI::IsMember({"wal", "rocksdb", "both"}));
  app.add_option("--proposers", proposers_text, "comma-separated counts of concurrent proposers");
  app.add_option("--seconds", seconds, "duration of each measurement")->check(CLI::PositiveNumber);
  app.add_option("--value-bytes", value_bytes, "bytes per entry");
  app.add_option("--dir", directory, "scratch directory (removed and re-created)");
  CLI11_PARSE(app, argc, argv);

  const std::vector<int> proposer_counts = synod::ParseList(proposers_text);
  fmt::print("{:<8} {:>9} {:>14} {:>13} {:>11}\n", "engine", "proposers", "entries/s",
             "entries/fsync", "fsyncs/s");
  for (const std::string name : {"wal", "rocksdb"}) {
    if (engine != "both" && engine != name) continue;
    for (int proposers : proposer_counts) {
      std::filesystem::remove_all(directory);
      std::filesystem::create_directories(directory);
      std::unique_ptr<synod::storage::FileSystem> fs;
      std::unique_ptr<synod::storage::Wal> wal;
      std::unique_ptr<rocksdb::DB> db;
      std::unique_ptr<synod::storage::LogWriter> writer =
          name == "wal" ? synod::OpenWalEngine(directory, &fs, &wal)
                        : synod::OpenRocksEngine(directory, &db);
      const synod::Measurement m = synod::Run(*writer, proposers, seconds, value_bytes);
      writer.reset();
      fmt::print("{:<8} {:>9} {:>14.0f} {:>13.1f} {:>11.0f}\n", name, proposers,
                 m.entries / m.seconds, static_cast<double>(m.entries) / m.fsyncs,
                 m.fsyncs / m.seconds);
      std::fflush(stdout);
    }
  }
  std::filesystem::remove_all(directory);
  return 0;
}
