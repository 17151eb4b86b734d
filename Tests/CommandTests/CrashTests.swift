// The crash test of invariant 1 with real processes: a child `understudy sql
// --each-line --json` commits a stream of transactions (DDL among them) and is killed
// with SIGKILL, at a random moment or at a failpoint inside the commit protocol. After
// every kill, reopening must give a database that (a) equals a fresh replay of the
// whole MAT and (b) holds every transaction the child had reported durable.

import Apply
import AuditTrail
import Foundation
import Node
import Primary
import SQLiteSupport
import TestSupport
import XCTest

final class CrashTests: XCTestCase {
  func testSIGKILLAtRandomMomentsLosesNothingAcknowledged() throws {
    let seed = testSeed("crash recovery")
    var rng = SeededGenerator(seed: seed)
    let root = try temporaryDirectory(self)
    let node = root + "/node"
    // Small trail files, so that kills land around roll-overs too.
    XCTAssertEqual(
      try understudy(["init", "primary", "--node", node, "--db", root + "/db.sqlite", "--trail-file-size", "8192"])
        .status, 0)
    XCTAssertEqual(
      try understudy([
        "sql", "--node", node,
        "CREATE TABLE items(id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE scratch(id INTEGER PRIMARY KEY)",
      ]).status, 0)

    var workload = Workload()
    var acknowledged: [Int: Int] = [:]  // items id -> txid
    var kinds: [String: Int] = [:]
    var diedAtFailpoint = 0
    var replayed = 0
    var tornTails = 0
    let rounds = 24
    for round in 0..<rounds {
      let failpoint: String? =
        switch round % 3 {
        case 0: nil
        case 1: "after-trail-sync:\(Int.random(in: 1...6, using: &rng))"
        default: "torn-trail-write:\(Int.random(in: 1...6, using: &rng))"
        }
      let child = try Child(node: node, failpoint: failpoint)
      let lines = (0..<Int.random(in: 200...1200, using: &rng)).map { _ in workload.next(&rng) }
      child.feed(lines.map(\.sql))
      if failpoint == nil {
        usleep(UInt32.random(in: 2_000...150_000, using: &rng))
      } else if child.waitForExit(seconds: 5) {
        diedAtFailpoint += 1
      }
      let acks = child.kill()
      kinds[failpoint.map { String($0.prefix(while: { $0 != ":" })) } ?? "random", default: 0] += 1
      for ack in acks {
        if let id = lines[ack.line - 1].insertedID { acknowledged[id] = ack.txid }
      }
      // Reopen: recovery replays and cuts. Then compare with a replay of the whole trail.
      let db = try AuditedDatabase.open(node: node)
      replayed += db.recovery.replayed
      if db.recovery.tornTail != nil { tornTails += 1 }
      db.close()
      let context = "seed \(seed) round \(round) (\(failpoint ?? "random kill")), \(acks.count) acks"
      let primary = try DatabaseChecksum.compute(Connection(path: root + "/db.sqlite", mode: .readOnly))
      let replayPath = root + "/replay-\(round).sqlite"
      _ = try Replay.rebuild(trail: NodeLayout(root: node).mat, into: replayPath)
      XCTAssertEqual(primary, try DatabaseChecksum.compute(Connection(path: replayPath, mode: .readOnly)), context)
      let present = Set(
        try Connection(path: root + "/db.sqlite", mode: .readOnly).query("SELECT id FROM items").compactMap {
          row -> Int? in
          if case .integer(let v) = row[0] { return Int(v) }
          return nil
        })
      let missing = acknowledged.keys.filter { !present.contains($0) }
      XCTAssertEqual(missing.sorted(), [], context)
      if !missing.isEmpty { break }
    }
    let files = try NodeLayout(root: node).mat.snos().count
    print(
      "crash recovery: \(rounds) rounds \(kinds), \(diedAtFailpoint) died at their failpoint, \(replayed) transactions replayed, \(tornTails) torn tails cut, \(acknowledged.count) acknowledged inserts, \(files) trail files"
    )
    // The failpoints fire inside the commit protocol: recovery must have had work to do.
    XCTAssertGreaterThan(diedAtFailpoint, 8)
    XCTAssertGreaterThan(replayed, 0)
    XCTAssertGreaterThan(tornTails, 0)
    XCTAssertGreaterThan(files, 3)
    XCTAssertGreaterThan(acknowledged.count, 100)
  }
}

/// Lines of SQL, one transaction each: inserts (checked after every kill), updates,
/// insert-and-delete pairs, and now and then DDL.
struct Workload {
  struct Line {
    var sql: String
    var insertedID: Int?
  }
  var nextID = 1
  var tables = 0

  mutating func next(_ rng: inout SeededGenerator) -> Line {
    let dice = Int.random(in: 0..<100, using: &rng)
    if dice < 2 {
      tables += 1
      return Line(
        sql: tables % 2 == 0
          ? "CREATE TABLE extra\(tables)(id INTEGER PRIMARY KEY, x); INSERT INTO extra\(tables) VALUES (1, \(tables))"
          : "ALTER TABLE items ADD COLUMN c\(tables) INTEGER DEFAULT \(tables)")
    }
    if dice < 15 && nextID > 1 {
      let id = Int.random(in: 1..<nextID, using: &rng)
      return Line(sql: "UPDATE items SET v = 'updated \(dice)' WHERE id = \(id)")
    }
    if dice < 25 {
      let id = Int.random(in: 1...1_000_000, using: &rng)
      return Line(sql: "INSERT OR IGNORE INTO scratch VALUES (\(id)); DELETE FROM scratch WHERE id = \(id)")
    }
    defer { nextID += 1 }
    return Line(sql: "INSERT INTO items(id, v) VALUES (\(nextID), 'item \(nextID)')", insertedID: nextID)
  }
}

/// `understudy sql --each-line --json` as a child process, fed from a thread and read
/// from another, so neither pipe can fill and block it.
final class Child: @unchecked Sendable {
  // @unchecked: `output` is appended by the reader thread and read after it has ended.
  struct Ack {
    var line: Int
    var txid: Int
  }
  private let process = Process()
  private let input = Pipe()
  private let stdout = Pipe()
  private var output = Data()
  private let readerDone = DispatchSemaphore(value: 0)

  init(node: String, failpoint: String?) throws {
    process.executableURL = URL(fileURLWithPath: understudyBinary)
    process.arguments = ["sql", "--node", node, "--each-line", "--json"]
    var environment = ProcessInfo.processInfo.environment
    environment["UNDERSTUDY_FAILPOINT"] = failpoint
    process.environment = environment
    process.standardInput = input
    process.standardOutput = stdout
    process.standardError = FileHandle.nullDevice
    try process.run()
    let reading = stdout.fileHandleForReading
    Thread { [self] in
      output = reading.readDataToEndOfFile()
      readerDone.signal()
    }.start()
  }

  /// Writes the lines from another thread; with `close`, ends the input after them so
  /// the child exits once it has committed them all.
  func feed(_ lines: [String], close: Bool = false) {
    let data = Data(lines.map { $0 + "\n" }.joined().utf8)
    let writing = input.fileHandleForWriting
    Thread {
      signal(SIGPIPE, SIG_IGN)
      try? writing.write(contentsOf: data)
      if close { try? writing.close() }
    }.start()
  }

  /// True if the child ended by itself within `seconds` (a failpoint killed it).
  func waitForExit(seconds: Double) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while process.isRunning && Date() < deadline { usleep(2_000) }
    return !process.isRunning
  }

  /// SIGKILLs the child (unless a failpoint already did) and returns its acknowledgements.
  func kill() -> [Ack] {
    Foundation.kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
    readerDone.wait()
    return output.split(separator: UInt8(ascii: "\n")).compactMap { line in
      guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
        let number = object["line"] as? Int, let txid = object["txid"] as? Int
      else { return nil }
      return Ack(line: number, txid: txid)
    }
  }
}
