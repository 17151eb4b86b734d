// How a node's daemon learns of commits made in other processes: every writer (the `sql`
// command, an application through AuditedDatabase) adds its commits and their latency to
// `state/commit-stats.json`, a small cumulative histogram, at most once a second and when
// it closes. The daemon only reads it when scraped; nothing here is on the commit's path
// but a few additions in memory.

import Foundation
import Node

/// The cumulative counts in `state/commit-stats.json` (Schemas/metrics.md).
public struct CommitStatsFile: Codable, Sendable, Equatable {
  public static let format = 1
  /// Upper bounds of the latency buckets, in seconds (the last bucket, +Inf, is implied).
  public static let bounds: [Double] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]

  public var format: Int
  /// Commits made durable (in the MAT and the database), by every writer since the file was made.
  public var commits: Int
  /// Their latencies summed, seconds.
  public var latencySumSeconds: Double
  /// Commits with a latency at most `bounds[i]` but above `bounds[i-1]` (not cumulative);
  /// one more entry for those above the last bound.
  public var buckets: [Int]

  public init() {
    format = Self.format
    commits = 0
    latencySumSeconds = 0
    buckets = Array(repeating: 0, count: Self.bounds.count + 1)
  }

  public static func path(_ layout: NodeLayout) -> String { layout.state + "/commit-stats.json" }

  /// The file's counts; nil when no writer has made one yet.
  public static func read(_ layout: NodeLayout) throws -> CommitStatsFile? {
    guard FileManager.default.fileExists(atPath: path(layout)) else { return nil }
    return try StateFile.read(CommitStatsFile.self, at: path(layout))
  }
}

/// A writer's commits not yet added to the file.
final class CommitStats: @unchecked Sendable {
  // @unchecked: guarded by `lock`.
  private let layout: NodeLayout
  private let lock = NSLock()
  private var pending = CommitStatsFile()
  private var lastFlush = Date()

  init(layout: NodeLayout) { self.layout = layout }

  /// Counts commits that took `latencies` seconds each, from queueing to durable.
  func record(_ latencies: [Double]) {
    guard !latencies.isEmpty else { return }
    let due: Bool = lock.withLock {
      for l in latencies {
        pending.commits += 1
        pending.latencySumSeconds += l
        pending.buckets[CommitStatsFile.bounds.firstIndex { l <= $0 } ?? CommitStatsFile.bounds.count] += 1
      }
      return Date().timeIntervalSince(lastFlush) >= 1
    }
    if due { flush() }
  }

  /// Adds what is pending to the file, under an exclusive lock on it (several writers may
  /// add). Best effort: statistics never fail a commit.
  func flush() {
    let add: CommitStatsFile = lock.withLock {
      let p = pending
      pending = CommitStatsFile()
      lastFlush = Date()
      return p
    }
    guard add.commits > 0 else { return }
    let path = CommitStatsFile.path(layout)
    let fd = open(path + ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
    guard fd >= 0 else { return }
    defer { close(fd) }
    flock(fd, LOCK_EX)
    defer { flock(fd, LOCK_UN) }
    var total = (try? CommitStatsFile.read(layout)) ?? CommitStatsFile()
    if total.buckets.count != add.buckets.count { total = CommitStatsFile() }
    total.commits += add.commits
    total.latencySumSeconds += add.latencySumSeconds
    for i in total.buckets.indices { total.buckets[i] += add.buckets[i] }
    guard let data = try? JSONEncoder().encode(total) else { return }
    // Written aside and renamed: a reader sees the old counts or the new, never half.
    let temporary = path + ".tmp-\(getpid())"
    guard FileManager.default.createFile(atPath: temporary, contents: data) else { return }
    if rename(temporary, path) != 0 { unlink(temporary) }
  }
}

#if canImport(Glibc)
  import Glibc
#endif
