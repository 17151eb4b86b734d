// `bench commit`: the same single-row transactions through plain SQLite (WAL,
// synchronous=FULL: one WAL sync per commit) and through Understudy (one MAT sync per
// group, SQLite at NORMAL), measured back to back on the same disk.

import AuditTrail
import Foundation
import Primary
import SQLiteSupport

enum CommitBenchmark {
  struct Measurement {
    var commits: Int
    var seconds: Double
    var rate: Double { Double(commits) / seconds }
  }

  struct Result {
    var writers: Int
    var plain: Measurement
    var understudy: Measurement
    var ratio: Double { understudy.rate / plain.rate }
  }

  static let table = "CREATE TABLE bench(id INTEGER PRIMARY KEY, writer INTEGER NOT NULL, payload TEXT NOT NULL)"
  static let insert = "INSERT INTO bench(writer, payload) VALUES (?, ?)"

  static func plainSQLite(dir: String, writers: Int, seconds: Double) throws -> Measurement {
    let path = "\(dir)/plain-\(writers).sqlite"
    let setup = try Connection(path: path, mode: .readWriteCreate)
    try setup.execute("PRAGMA journal_mode = WAL")
    try setup.execute(table)
    let counts = try runWriters(writers, seconds: seconds) { writer in
      let db = try Connection(path: path)
      try db.execute("PRAGMA synchronous = FULL")
      db.setBusyTimeout(milliseconds: 60_000)
      let statement = try db.prepare(insert)
      return Job {
        try statement.bind([.integer(Int64(writer)), .text("payload of a typical row, about sixty bytes long....")])
        try statement.run()
        statement.reset()
      }
    }
    return Measurement(commits: counts, seconds: seconds)
  }

  static func understudy(dir: String, writers: Int, seconds: Double) throws -> Measurement {
    let node = "\(dir)/node-\(writers)"
    try PrimarySetup.initPrimary(.init(node: node, database: "\(dir)/understudy-\(writers).sqlite"))
    let db = try AuditedDatabase.open(node: node)
    defer { db.close() }
    _ = try db.write { try $0.execute(table) }
    let counts = try runWriters(writers, seconds: seconds) { writer in
      Job {
        _ = try db.write {
          try $0.execute(
            insert, [.integer(Int64(writer)), .text("payload of a typical row, about sixty bytes long....")])
        }
      }
    }
    return Measurement(commits: counts, seconds: seconds)
  }

  /// The disk's own ceiling for one writer: a 150-byte record written into a
  /// preallocated file and fdatasync'ed, as the MAT does. A commit cannot beat it, and
  /// plain SQLite's commit is about one of these; printed beside the ratios because this
  /// disk's speed moves between runs.
  static func diskSyncs(dir: String, seconds: Double) throws -> Measurement {
    let path = "\(dir)/sync-ceiling"
    defer { unlink(path) }
    try DurableFile.create(path: path, contents: [], zeroFill: 16 << 20)
    let file = try AuditTrail.FileHandle(path: path, flags: O_RDWR)
    let record = [UInt8](repeating: 7, count: 150)
    let start = Clock.monotonicSeconds()
    var n = 0
    while Clock.monotonicSeconds() - start < seconds {
      try file.write(record, at: (n * record.count) % (16 << 20 - record.count))
      try file.syncData()
      n += 1
    }
    return Measurement(commits: n, seconds: Clock.monotonicSeconds() - start)
  }

  /// Runs `writers` threads, each calling its commit function until the time is up.
  static func runWriters(_ writers: Int, seconds: Double, make: (Int) throws -> Job) throws -> Int {
    let commits = try (0..<writers).map(make)
    let counter = Counter()
    let group = DispatchGroup()
    let deadline = Clock.monotonicSeconds() + seconds
    for (i, commit) in commits.enumerated() {
      group.enter()
      let thread = Thread {
        var n = 0
        do {
          while Clock.monotonicSeconds() < deadline {
            try commit.run()
            n += 1
          }
        } catch {
          counter.fail("writer \(i): \(error)")
        }
        counter.add(n)
        group.leave()
      }
      thread.start()
    }
    group.wait()
    if let failure = counter.failure { throw CommandError(failure) }
    return counter.total
  }

  /// One writer's commit function, used by its own thread only.
  final class Job: @unchecked Sendable {
    // @unchecked: each job (and the connection or statement it holds) is run by one thread.
    let run: () throws -> Void
    init(_ run: @escaping () throws -> Void) { self.run = run }
  }

  final class Counter: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    private let lock = NSLock()
    private(set) var total = 0
    private(set) var failure: String?
    func add(_ n: Int) {
      lock.lock()
      total += n
      lock.unlock()
    }
    func fail(_ message: String) {
      lock.lock()
      if failure == nil { failure = message }
      lock.unlock()
    }
  }
}
