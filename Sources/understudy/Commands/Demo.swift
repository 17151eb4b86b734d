// `demo`: the story so far, told by the steps in Demo/DemoSteps.swift.

import ArgumentParser
import Foundation

struct Demo: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run the story so far on this machine and check every step.",
    discussion: """
      Creates a primary node and a backup node on 127.0.0.1 in a temporary directory and runs
      both daemons (the backup copies the primary's database, then streams). A writer process
      commits transfers and is killed with SIGKILL in the middle of its work, three times; the
      backup daemon is SIGKILLed and restarted too. After each writer kill the node is reopened
      (recovery replays the audit trail and cuts a torn tail). Then it checks that every
      transaction the writer reported durable is there, that the database equals a fresh replay
      of its audit trail, and that the backup holds exactly the same content.

      Then the disaster: with the link down, the primary commits transfers that are never
      shipped, and its daemon is SIGKILLed. The backup takes over (735, 888), takes writes as
      the new primary, the old primary is recovered to the 888 position (listing every
      transaction it undid), follows the new primary, and a planned switchover puts the roles
      back. Checksums are compared at every hand-over. Exits non-zero if any check fails.
      """)

  @Option(help: "Seed for the moment of the kill (default: random; printed).")
  var seed: UInt64?
  @Option(help: "Keep the demo's files here instead of a temporary directory.")
  var dir: String?
  @Flag(
    help:
      "Run the MIMIX cycle instead, as an operator types it: rtdr setup, failover with production lost while transactions are unshipped, resync, failback, on two servers."
  )
  var mimix = false

  func run() throws {
    try reporting(json: false) {
      let seed = seed ?? UInt64.random(in: 1...999_999)
      let root = try dir ?? Scratch.makeTemporaryDirectory(prefix: "understudy-demo")
      defer { if dir == nil { try? FileManager.default.removeItem(atPath: root) } }
      let demo = DemoState(root: root, seed: seed)
      defer { demo.stopDaemons() }
      Output.line("Understudy \(mimix ? "MIMIX " : "")demo (seed \(seed)) in \(root)")
      if mimix {
        try demo.runMIMIX()
        Output.line(demo.failures == 0 ? "demo passed" : "demo FAILED: \(demo.failures) check(s)")
        if demo.failures > 0 { throw ExitCode(1) }
        return
      }
      try demo.createPrimary()
      try demo.startBackup()
      try demo.writerKills()
      let primarySum = try demo.verifyAcked()
      let applied = try demo.verifyBackup(primarySum)
      let lost = try demo.disasterUnshipped()
      let takeover = try demo.takeover(applied: applied, primarySum: primarySum)
      try demo.newPrimaryTakesWrites()
      try demo.recover(to: takeover, lost: lost)
      let newPrimarySum = try demo.follow()
      try demo.switchover(newPrimarySum: newPrimarySum)
      Output.line(demo.failures == 0 ? "demo passed" : "demo FAILED: \(demo.failures) check(s)")
      if demo.failures > 0 { throw ExitCode(1) }
    }
  }
}
