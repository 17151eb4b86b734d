// Waiting for a node's database to reach a MAT position.

import Apply
import AuditTrail
import Foundation
import Node

public enum AppliedWait {
  public struct TimedOut: Error, CustomStringConvertible {
    public var node: String
    public var target: MATPosition
    public var applied: MATPosition?
    public var seconds: Double
    public var reason: String?
    public var description: String {
      "node \(node) has applied up to \(applied.map(\.description) ?? "nothing yet (no database)"), not \(target), after \(seconds) s"
        + (reason.map { ": \($0)" } ?? "")
    }
  }

  public static func wait(node: String, for target: MATPosition, timeout: Double) throws -> MATPosition {
    let layout = NodeLayout(root: node)
    let config = try layout.loadConfig()
    let deadline = Clock.monotonicSeconds() + timeout
    var applied: MATPosition?
    while true {
      if FileManager.default.fileExists(atPath: config.database) {
        applied = try CommitState.read(databaseAt: config.database).end
        if let applied, applied >= target { return applied }
      }
      if Clock.monotonicSeconds() >= deadline {
        let stopped = config.role == .backup ? (try? BackupStatus.read(node: node))?.updaterStopped : nil
        throw TimedOut(node: node, target: target, applied: applied, seconds: timeout, reason: stopped)
      }
      usleep(20_000)
    }
  }
}
