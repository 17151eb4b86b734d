import ArgumentParser
import Foundation
import Node

struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Measure Understudy against plain SQLite in the same run.", subcommands: [BenchCommit.self])
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
      let counts = writers.split(separator: ",").compactMap { Int($0) }
      guard !counts.isEmpty, counts.allSatisfy({ (1...256).contains($0) }) else {
        throw ValidationError("--writers takes counts from 1 to 256, such as 1,8")
      }
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

enum Scratch {
  static func makeTemporaryDirectory(prefix: String) throws -> String {
    let base = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
    var template = Array("\(base)/\(prefix)-XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { throw CommandError("cannot create a temporary directory in \(base)") }
    return String(cString: made)
  }
}
