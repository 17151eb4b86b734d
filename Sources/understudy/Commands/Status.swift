import ArgumentParser
import Backup
import Node
import Primary

struct Status: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Show a node's role, generation and positions.")

  @OptionGroup var node: NodeOption
  @OptionGroup var output: JSONFlag

  func run() throws {
    try reporting(json: output.json) {
      if try NodeLayout(root: node.node).loadConfig().role == .backup {
        try showBackup()
        return
      }
      let s = try NodeStatus.read(node: node.node)
      if output.json {
        Output.json(s.json)
        return
      }
      Output.line("node        \(s.node) (id \(s.nodeId))")
      Output.line("role        \(s.role), generation \(s.generation)")
      Output.line("database    \(s.database)")
      Output.line(
        "trail end   \(s.trailEnd) (\(s.trailFiles) file\(s.trailFiles == 1 ? "" : "s"), last transaction \(s.lastTxid))"
      )
      Output.line("durable end \(s.durableEnd)")
      Output.line(
        "database at \(s.databaseEnd)"
          + (s.databaseEnd < s.trailEnd ? " (behind its trail: the next open replays the rest)" : ""))
      if let torn = s.tornTail { Output.line("torn tail   at \(torn) (cut at the next open)") }
      Output.line("MAT kept    \(s.matBytes) bytes from \(s.oldestKept.map(\.description) ?? "-")")
      for r in s.retainedFor {
        Output.line(
          r.droppedMicros == nil
            ? "kept for    backup \(r.node) from \(r.needs)"
            : "DROPPED     backup \(r.node) (held back more than maxRetainedBytes; needs a full copy)")
      }
      for b in s.backups {
        Output.line(
          "backup      \(b.nodeID) at \(b.peer): acked \(b.acked.map(\.description) ?? "-"), applied \(b.applied.map(\.description) ?? "-")"
        )
      }
      if let blocked = s.writesBlocked { Output.line("WRITES BLOCKED: \(blocked)") }
      if let problem = s.fencingProblem { Output.line("FENCING BROKEN: \(problem)") }
    }
  }

  func showBackup() throws {
    let s = try BackupStatus.read(node: node.node)
    if output.json {
      Output.json(s.json)
      return
    }
    Output.line("node        \(s.node) (id \(s.nodeId))")
    Output.line(
      "role        backup of \(s.primary)\(s.relayedBy.map { " (a relay: backup \($0))" } ?? ""), context '\(s.context)', generation \(s.generation)"
    )
    Output.line("database    \(s.database)")
    let link =
      s.linkStalledSince.map { "stalled since \(isoTime(micros: $0)) (connected, but nothing arrives)" }
      ?? (s.connected ? "connected" : "not connected")
    Output.line(
      "daemon      \(s.daemonRunning ? "running" : "not running"), link \(link)"
        + (s.lastError.map { " (\($0))" } ?? ""))
    Output.line("acked       \(s.acked.map(\.description) ?? "-") (image trail durable end)")
    Output.line("applied     \(s.applied.map(\.description) ?? "- (not copied yet)")")
    Output.line("safe        \(s.safe.map(\.description) ?? "-")")
    Output.line(
      "rtd         receiver \(String(format: "%.3f", s.rtdReceiver)) s, updater \(String(format: "%.3f", s.rtdUpdater)) s"
    )
    Output.line("backlog     \(s.backlogRecords) records, \(s.backlogBytes) bytes")
    if let stop = s.updaterStop {
      let state =
        !s.daemonRunning
        ? "takes effect when the daemon starts"
        : s.updaterStopReached ? "reached" : s.updaterStopAcknowledged ? "applying up to it" : "not acknowledged yet"
      Output.line(
        "stop point  \(UpdaterStopCommand.text(stop.point)) (\(state); `understudy updater start` removes it)")
    }
    if let stopped = s.updaterStopped { Output.line("UPDATER STOPPED: \(stopped)") }
    if let waiting = s.updaterWaiting { Output.line("UPDATER WAITING: \(waiting)") }
  }
}
