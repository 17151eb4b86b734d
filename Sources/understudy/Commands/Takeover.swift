// `takeover` and `resolve`: the backup's side of losing the primary.

import ArgumentParser
import AuditTrail
import Foundation
import Node
import Procedures

struct TakeoverCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "takeover",
    abstract: "Make a backup whose primary is lost the primary of the next generation.",
    discussion: """
      Applies every whole committed transaction the image trail holds, then logs 735 (safe
      MAT position) and 888 (the file-recovery position for the old primary, with the
      database checksum there) or 858 (no such position, and why), starts generation g+1
      with the node's own MAT and accepts writes. Refused while the primary still answers,
      unless --force. Stops the backup daemon if it runs; `understudy start` then serves as
      primary on the node's listen address. Safe to run again: it reports the same. A
      second takeover started while one runs waits for it, says so, and reports its answer.
      """)

  @OptionGroup var node: NodeOption
  @OptionGroup var output: JSONFlag
  @Flag(help: "Take over even though the primary still answers (two primaries until it is fenced).")
  var force = false

  func run() throws {
    // `understudy stop`, or another procedure stopping "the daemon", signals the pid in
    // the daemon lock's pid file, which names this takeover while it holds the lock: a
    // SIGTERM must not end it halfway with no word. It says so and finishes; SIGINT or
    // SIGKILL still interrupt it (a re-run then finishes the same way).
    signal(SIGTERM, SIG_IGN)
    let terminate = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .global())
    terminate.setEventHandler { [node = node.node] in
      Output.error(
        "takeover of \(node): SIGTERM ignored; a takeover finishes what it started (interrupt it with SIGINT or SIGKILL; running it again is safe and gives the same answer)"
      )
    }
    terminate.resume()
    defer { terminate.cancel() }
    try reporting(json: output.json) {
      let result = try Takeover.run(
        node: node.node, force: force, progress: { Output.progress($0 + "\n", json: output.json) },
        waiting: { Output.error($0) })
      if output.json { return Output.json(result.json) }
      Output.line("takeover complete: generation \(result.generation)")
      Output.line("  735 safe MAT position      \(result.safe)")
      if let p = result.fileRecovery {
        Output.line("  888 file-recovery position \(p)  (recover the old primary with --to-mat \(p))")
      } else {
        Output.line("  858 no file-recovery position: \(result.reason ?? "")")
      }
      Output.line("  checksum                   \(result.checksum)")
      Output.line("  applied at takeover        \(result.applied) transactions (last txid \(result.lastTxid))")
      Output.line("  own MAT starts at          \(result.matStart)")
      Output.line(
        result.listen.map { "  start its daemon to serve backups on \($0): understudy start --node \(node.node)" }
          ?? "  it has no listen address: it accepts writes but cannot serve a backup")
    }
  }
}

struct ResolveCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "resolve",
    abstract:
      "After an updater conflict, skip that one transaction on the backup (logged; the daemon must be stopped).",
    discussion: """
      The skipped transaction is recorded in the backup database and logged (9053). The
      backup then no longer holds a prefix of the primary's MAT: a later takeover reports
      858 naming it instead of a file-recovery position.
      """)

  @OptionGroup var node: NodeOption
  @OptionGroup var output: JSONFlag
  @Option(help: "The transaction to skip: the one the updater stopped at.")
  var skip: UInt64

  func run() throws {
    try reporting(json: output.json) {
      let skipped = try Resolve.skip(node: node.node, txid: TransactionID(skip))
      if output.json {
        Output.json(
          .object([
            ("skipped", .int(Int64(skipped.txid.rawValue))), ("position", skipped.position.json),
            ("end", skipped.end.json),
          ]))
      } else {
        Output.line(
          "skipped transaction \(skipped.txid) at \(skipped.position); the updater continues from \(skipped.end)")
      }
    }
  }
}
