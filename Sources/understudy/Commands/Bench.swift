import ArgumentParser
import Foundation
import Link
import Node

struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Measure Understudy against plain SQLite in the same run.",
    subcommands: [BenchCommit.self, BenchReplicate.self, BenchRecover.self, BenchRestore.self])

  /// A comma-separated list of numbers, each in `range`; nil if it is empty or any entry is not.
  static func numbers(_ text: String, in range: ClosedRange<Int>) -> [Int]? {
    let entries = text.split(separator: ",", omittingEmptySubsequences: false)
    let numbers = entries.compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }.filter(range.contains)
    return !entries.isEmpty && numbers.count == entries.count ? numbers : nil
  }
}

struct BenchCommit: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "commit",
    abstract: "Durable audited commits/s vs plain SQLite (WAL, synchronous=FULL), 1 and 8 writers.")

  @Option(help: "Seconds per measurement.")
  var seconds: Double = 3
  @Option(help: "Writer counts to measure, comma-separated.")
  var writers: String = "1,8"
  @Option(help: "Directory for the scratch databases (default: a new temporary directory).")
  var dir: String?
  @OptionGroup var output: JSONFlag

  func run() throws {
    try reporting(json: output.json) {
      let scratch = try dir ?? Scratch.makeTemporaryDirectory(prefix: "understudy-bench")
      defer { if dir == nil { try? FileManager.default.removeItem(atPath: scratch) } }
      var results: [CommitBenchmark.Result] = []
      guard let counts = Bench.numbers(writers, in: 1...256) else {
        throw ValidationError("--writers takes counts from 1 to 256, such as 1,8")
      }
      Output.progress("the disk's fdatasync rate…", json: output.json)
      let disk = try CommitBenchmark.diskSyncs(dir: scratch, seconds: min(seconds, 1))
      for writers in counts {
        Output.progress("plain SQLite, \(writers) writer(s)…", json: output.json)
        let plain = try CommitBenchmark.plainSQLite(dir: scratch, writers: writers, seconds: seconds)
        Output.progress("Understudy, \(writers) writer(s)…", json: output.json)
        let audited = try CommitBenchmark.understudy(dir: scratch, writers: writers, seconds: seconds)
        results.append(.init(writers: writers, plain: plain, understudy: audited))
      }
      Output.progress("", json: output.json)
      if output.json {
        Output.json(
          .object([
            ("benchmark", .string("commit")), ("seconds", .double(seconds)),
            ("cores", .int(Int64(ProcessInfo.processInfo.activeProcessorCount))),
            ("diskSyncsPerSecond", .double(disk.rate.rounded())),
            (
              "results",
              .array(
                results.map {
                  .object([
                    ("writers", .int(Int64($0.writers))), ("plainCommitsPerSecond", .double($0.plain.rate.rounded())),
                    ("understudyCommitsPerSecond", .double($0.understudy.rate.rounded())),
                    ("ratio", .double(($0.ratio * 100).rounded() / 100)),
                  ])
                })
            ),
          ]))
      } else {
        Output.line("durable single-row commits per second, \(seconds) s each, same disk, same run")
        Output.line(
          String(format: "this disk: %.0f small writes + fdatasync per second (one writer's ceiling)", disk.rate))
        Output.line("writers  plain SQLite (WAL, FULL)  Understudy (MAT + WAL, NORMAL)  ratio")
        for r in results {
          Output.line(
            String(
              format: "%7d  %24.0f  %30.0f  %5.2f", r.writers, r.plain.rate, r.understudy.rate, r.ratio))
        }
      }
    }
  }
}

struct BenchReplicate: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "replicate",
    abstract: "A primary and a backup on loopback: commit rate alone and attached, apply rate, commit-to-applied lag.")

  @Option(help: "Seconds per measurement.")
  var seconds: Double = 2
  @Option(
    help:
      "Rounds of the backup attached, each between two parts of the primary alone; the figures are their medians.")
  var rounds: Int = 5
  @Option(help: "Directory for the scratch nodes (default: a new temporary directory).")
  var dir: String?
  @Option(
    help:
      "An existing directory for the backup node, such as one on another disk (default: beside the primary, sharing its disk)."
  )
  var backupDir: String?
  @Option(
    help:
      "The link to measure: tls (what every node runs), plaintext (loopback only, for comparison) or both, one after the other in this run."
  )
  var link: LinkMode = .both
  @OptionGroup var output: JSONFlag

  enum LinkMode: String, ExpressibleByArgument, CaseIterable {
    case tls, plaintext, both
  }

  func run() throws {
    try reporting(json: output.json) {
      guard seconds > 0 && seconds <= 600 else { throw ValidationError("--seconds takes 0 to 600") }
      guard (1...99).contains(rounds) else { throw ValidationError("--rounds takes 1 to 99") }
      let scratch = try dir ?? Scratch.makeTemporaryDirectory(prefix: "understudy-bench")
      defer { if dir == nil { try? FileManager.default.removeItem(atPath: scratch) } }
      var backupRoot = scratch
      if let backupDir {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: backupDir, isDirectory: &isDirectory), isDirectory.boolValue else {
          throw ValidationError("--backup-dir \(backupDir) is not an existing directory")
        }
        backupRoot = try Scratch.makeTemporaryDirectory(prefix: "understudy-bench-backup", in: backupDir)
      }
      defer { if backupDir != nil { try? FileManager.default.removeItem(atPath: backupRoot) } }
      var results: [(link: String, result: ReplicateBenchmark.Result)] = []
      for mode in link == .both ? [LinkMode.tls, .plaintext] : [link] {
        Output.progress("link: \(mode.rawValue)", json: output.json)
        let environment = mode == .plaintext ? [LinkSecurity.plaintextVariable: "1"] : [:]
        let modeDir = scratch + "/" + mode.rawValue
        let modeBackup = backupRoot == scratch ? modeDir : backupRoot + "/" + mode.rawValue
        for directory in Set([modeDir, modeBackup]) {
          try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let r = try ReplicateBenchmark.run(
          dir: modeDir, backupRoot: modeBackup, seconds: seconds, rounds: rounds, environment: environment
        ) {
          Output.progress($0, json: output.json)
        }
        results.append((mode.rawValue, r))
      }
      if output.json {
        var fields = Self.json(results[0].result, seconds: seconds)
        fields.insert(("link", .string(results[0].link)), at: 1)
        if results.count > 1 {
          fields.append(("plaintext", .object(Self.json(results[1].result, seconds: seconds))))
        }
        Output.json(.object(fields))
      } else {
        for (mode, r) in results { Self.print(r, link: mode, seconds: seconds) }
      }
    }
  }

  static func rounded(_ v: Double, _ places: Double = 1) -> JSON { .double((v * places).rounded() / places) }

  static func json(_ r: ReplicateBenchmark.Result, seconds: Double) -> [(String, JSON)] {
    [
      ("benchmark", .string("replicate")), ("seconds", .double(seconds)),
      ("cores", .int(Int64(ProcessInfo.processInfo.activeProcessorCount))),
      ("plainCommitsPerSecond", rounded(r.plainRate)), ("aloneCommitsPerSecond", rounded(r.aloneRate)),
      ("attachedCommitsPerSecond", rounded(r.attachedRate)), ("attachCost", rounded(r.attachCost, 1000)),
      ("applyPerSecond", rounded(r.applyRate)), ("catchUpPerSecond", rounded(r.catchUpRate)),
      ("pacedCommitsPerSecond", rounded(r.pacedRate)),
      (
        "rounds",
        .array(
          r.rounds.map {
            .object([
              ("aloneCommitsPerSecond", rounded($0.aloneRate)),
              ("attachedCommitsPerSecond", rounded($0.attachedRate)),
              ("attachCost", rounded($0.attachCost, 1000)), ("applyPerSecond", rounded($0.applyRate)),
              ("catchUpPerSecond", rounded($0.catchUpRate)),
            ])
          })
      ),
      (
        "lagMillis",
        .object([
          ("samples", .int(Int64(r.lagMillis.count))), ("p50", rounded(r.lag(0.5), 100)),
          ("p99", rounded(r.lag(0.99), 100)), ("max", rounded(r.lagMillis.last ?? 0, 100)),
        ])
      ),
    ]
  }

  static func print(_ r: ReplicateBenchmark.Result, link: String, seconds: Double) {
    Output.line(
      "link \(link): single-writer durable commits per second, \(seconds) s each, loopback; medians of \(r.rounds.count) rounds, each attached part against the alone parts before and after it"
    )
    Output.line(String(format: "plain SQLite (WAL, FULL)          %8.0f", r.plainRate))
    Output.line(
      String(format: "Understudy primary alone          %8.0f  (%.2f of plain)", r.aloneRate, r.aloneRate / r.plainRate)
    )
    Output.line(
      String(
        format: "Understudy with backup attached   %8.0f  (%.2f of plain; attaching costs %.1f%%)", r.attachedRate,
        r.attachedRate / r.plainRate, r.attachCost * 100))
    Output.line(
      String(
        format: "backup apply rate (drain)         %8.0f  (%.2f of the attached commit rate)", r.applyRate,
        r.applyRate / r.attachedRate))
    Output.line(
      String(
        format: "backup catching up on a backlog   %8.0f  (%.1f times the attached commit rate)", r.catchUpRate,
        r.catchUpRate / r.attachedRate))
    Output.line(
      String(
        format: "commit-to-applied lag at %.0f/s:  p50 %.2f ms, p99 %.2f ms, max %.2f ms (%d commits)", r.pacedRate,
        r.lag(0.5), r.lag(0.99), r.lagMillis.last ?? 0, r.lagMillis.count))
    for (i, round) in r.rounds.enumerated() {
      Output.line(
        String(
          format: "round %d: alone %.0f, attached %.0f (costs %.1f%%), apply %.0f, catch-up %.0f", i + 1,
          round.aloneRate, round.attachedRate, round.attachCost * 100, round.applyRate, round.catchUpRate))
    }
  }
}

struct BenchRecover: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "recover",
    abstract:
      "Takeover and file-recovery time for K diverged transactions, against a full copy, for several database sizes.")

  @Option(help: "Database sizes N in rows, comma-separated.")
  var rows: String = "10000,100000,1000000"
  @Option(help: "Diverged transactions K (committed on the primary, never shipped).")
  var diverged: Int = 1000
  @Option(help: "Directory for the scratch nodes (default: a new temporary directory).")
  var dir: String?
  @OptionGroup var output: JSONFlag

  func run() throws {
    try reporting(json: output.json) {
      guard let sizes = Bench.numbers(rows, in: 1...50_000_000) else {
        throw ValidationError("--rows takes sizes from 1 to 50000000, comma-separated")
      }
      guard diverged >= 1 && diverged <= 1_000_000 else { throw ValidationError("--diverged takes 1 to 1000000") }
      let scratch = try dir ?? Scratch.makeTemporaryDirectory(prefix: "understudy-bench")
      defer { if dir == nil { try? FileManager.default.removeItem(atPath: scratch) } }
      let results = try RecoverBenchmark.run(dir: scratch, sizes: sizes, diverged: diverged) {
        Output.progress($0, json: output.json)
      }
      func ms(_ s: Double) -> JSON { .double((s * 10_000).rounded() / 10) }
      if output.json {
        Output.json(
          .object([
            ("benchmark", .string("recover")), ("diverged", .int(Int64(diverged))),
            ("cores", .int(Int64(ProcessInfo.processInfo.activeProcessorCount))),
            (
              "sizes",
              .array(
                results.map { r in
                  .object([
                    ("rows", .int(Int64(r.rows))), ("bytes", .int(Int64(r.bytes))),
                    ("initialCopyMillis", ms(r.initialCopySeconds)), ("plainCopyMillis", ms(r.plainCopySeconds)),
                    ("takeoverMillis", ms(r.takeoverSeconds)), ("recoverMillis", ms(r.recoverSeconds)),
                    ("recoverChecksumMillis", ms(r.recoverChecksumSeconds)),
                    (
                      "recoverStepsMillis",
                      .object(r.recoverSteps.sorted { $0.key < $1.key }.map { ($0.key, ms($0.value)) })
                    ),
                    (
                      "recoverOverInitialCopy",
                      .double((r.recoverSeconds / r.initialCopySeconds * 1000).rounded() / 1000)
                    ),
                  ])
                })
            ),
          ]))
      } else {
        if isatty(2) != 0 { Output.progress("", json: false) }
        Output.line("K = \(diverged) diverged transactions; one run; loopback; times in ms")
        Output.line(
          "      rows        MiB   full copy (link)   plain SQLite copy   takeover   file recovery (checksum)   recovery/full copy"
        )
        for r in results {
          Output.line(
            String(
              format: "%10d %10.1f %18.1f %19.1f %10.1f %15.1f (%8.1f) %20.3f", r.rows, Double(r.bytes) / 1_048_576,
              r.initialCopySeconds * 1000, r.plainCopySeconds * 1000, r.takeoverSeconds * 1000,
              r.recoverSeconds * 1000, r.recoverChecksumSeconds * 1000, r.recoverSeconds / r.initialCopySeconds))
        }
      }
    }
  }
}

struct BenchRestore: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "restore",
    abstract:
      "Virtual restore (scrt_ra) K transactions back, split into copy and undo, against a full copy of the database.")

  @Option(help: "Database size N in rows.")
  var rows: Int = 1_000_000
  @Option(help: "Transactions K to go back, comma-separated; max(K) are committed and applied first.")
  var back: String = "1000,10000"
  @Option(help: "Directory for the scratch nodes (default: a new temporary directory).")
  var dir: String?
  @OptionGroup var output: JSONFlag

  func run() throws {
    try reporting(json: output.json) {
      guard rows >= 1 && rows <= 50_000_000 else { throw ValidationError("--rows takes 1 to 50000000") }
      guard let counts = Bench.numbers(back, in: 1...1_000_000) else {
        throw ValidationError("--back takes counts from 1 to 1000000, comma-separated, such as 1000,10000")
      }
      let scratch = try dir ?? Scratch.makeTemporaryDirectory(prefix: "understudy-bench")
      defer { if dir == nil { try? FileManager.default.removeItem(atPath: scratch) } }
      let base = scratch + "/restore"
      try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
      defer { try? FileManager.default.removeItem(atPath: base) }
      let r = try RestoreBenchmark.run(dir: base, rows: rows, back: counts) { Output.progress($0, json: output.json) }
      func ms(_ s: Double) -> JSON { .double((s * 10_000).rounded() / 10) }
      func ratio(_ v: Double) -> JSON { .double((v / r.vacuumIntoSeconds * 10_000).rounded() / 10_000) }
      let all = [r.snapshot] + r.restores
      if output.json {
        Output.json(
          .object([
            ("benchmark", .string("restore")), ("rows", .int(Int64(r.rows))), ("bytes", .int(Int64(r.bytes))),
            ("transactions", .int(Int64(r.transactions))),
            ("cores", .int(Int64(ProcessInfo.processInfo.activeProcessorCount))),
            ("commitMillis", ms(r.commitSeconds)),
            (
              "copies",
              .object([
                ("vacuumIntoMillis", ms(r.vacuumIntoSeconds)), ("rawCopyMillis", ms(r.rawCopySeconds)),
                ("onlineBackupMillis", ms(r.onlineBackupSeconds)),
              ])
            ),
            (
              "restores",
              .array(
                all.map { x in
                  var fields: [(String, JSON)] = [
                    ("back", .int(Int64(x.back))), ("undone", .int(Int64(x.undone))), ("position", x.position.json),
                    ("millis", ms(x.seconds)), ("copyMillis", ms(x.copySeconds)), ("undoMillis", ms(x.undoSeconds)),
                    ("otherMillis", ms(x.otherSeconds)),
                    ("releaseMillis", ms(x.releaseSeconds)), ("overVacuumInto", ratio(x.seconds)),
                    ("undoOverVacuumInto", ratio(x.undoSeconds)),
                  ]
                  if x.undone > 0 {
                    fields.append(
                      (
                        "undoMicrosPerTransaction",
                        .double((x.undoSeconds / Double(x.undone) * 10_000_000).rounded() / 10)
                      ))
                  }
                  return .object(fields)
                })
            ),
          ]))
      } else {
        if isatty(2) != 0 { Output.progress("", json: false) }
        Output.line(
          String(
            format:
              "N = %d rows (%.1f MiB replica), %d transactions applied on the backup; one run; loopback; times in ms",
            r.rows, Double(r.bytes) / 1_048_576, r.transactions))
        Output.line(
          String(
            format:
              "full copies of the replica: VACUUM INTO %.1f (synced), raw file copy %.1f (synced), SQLite online backup %.1f (synced by its commit)",
            r.vacuumIntoSeconds * 1000, r.rawCopySeconds * 1000, r.onlineBackupSeconds * 1000))
        Output.line(
          "restore            K    undone      total       copy       undo      other    release   total/VACUUM INTO   undo/VACUUM INTO   undo µs/txn"
        )
        for x in all {
          let perTransaction = x.undone > 0 ? String(format: "%.1f", x.undoSeconds / Double(x.undone) * 1_000_000) : "-"
          Output.line(
            (x.back == 0 ? "scrt_ra -X  " : "scrt_ra -t  ")
              + String(
                format: " %7d %9d %10.1f %10.1f %10.1f %10.1f %10.1f %19.3f %18.4f ", x.back, x.undone,
                x.seconds * 1000,
                x.copySeconds * 1000, x.undoSeconds * 1000, x.otherSeconds * 1000, x.releaseSeconds * 1000,
                x.seconds / r.vacuumIntoSeconds,
                x.undoSeconds / r.vacuumIntoSeconds)
              + String(repeating: " ", count: max(0, 13 - perTransaction.count)) + perTransaction)
        }
      }
    }
  }
}

enum Scratch {
  static func makeTemporaryDirectory(prefix: String, in parent: String? = nil) throws -> String {
    let base = parent ?? ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
    var template = Array("\(base)/\(prefix)-XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { throw CommandError("cannot create a temporary directory in \(base)") }
    return String(cString: made)
  }
}
