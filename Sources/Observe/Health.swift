// Patroni-style health answers for load balancers and monitors: `/health`, `/primary`,
// `/backup?max_rtd=SECONDS`, each 200 or 503 with a one-line JSON reason. Decided from the
// same snapshot `/metrics` takes, so both say the same.

import Foundation
import Node

public struct HealthAnswer: Sendable, Equatable {
  public var status: Int
  public var reason: String
  public var role: String?

  /// The one-line JSON body: {"ok":…,"role":…,"reason":…}.
  public var body: String {
    JSON.object([
      ("ok", .bool(status == 200)), ("role", role.map(JSON.string) ?? .null), ("reason", .string(reason)),
    ]).serialized() + "\n"
  }
}

public enum Health {
  /// 200 while the daemon runs its role normally: a primary that can learn of a takeover,
  /// a backup whose status reads (its runtime file is kept by a running daemon).
  public static func health(_ snap: () throws -> NodeSnapshot) -> HealthAnswer {
    do {
      let s = try snap()
      if let p = s.primary, let problem = p.fencingProblem {
        return HealthAnswer(status: 503, reason: "fencing broken: \(problem)", role: "primary")
      }
      if let b = s.backup, !b.daemonRunning {
        return HealthAnswer(status: 503, reason: "the daemon is not running", role: "backup")
      }
      return HealthAnswer(status: 200, reason: "running as \(s.role)", role: s.role.rawValue)
    } catch {
      return HealthAnswer(status: 503, reason: "status unreadable: \(error)", role: nil)
    }
  }

  /// 200 only on a writable primary: not superseded, no write block, fencing readable.
  public static func primary(_ snap: () throws -> NodeSnapshot) -> HealthAnswer {
    do {
      let s = try snap()
      guard let p = s.primary else { return HealthAnswer(status: 503, reason: "not a primary", role: s.role.rawValue) }
      if s.superseded {
        return HealthAnswer(status: 503, reason: "superseded by a newer generation", role: "primary")
      }
      if let blocked = p.writesBlocked {
        return HealthAnswer(status: 503, reason: "writes blocked: \(blocked)", role: "primary")
      }
      if let problem = p.fencingProblem {
        return HealthAnswer(status: 503, reason: "fencing broken: \(problem)", role: "primary")
      }
      return HealthAnswer(status: 200, reason: "writable primary", role: "primary")
    } catch {
      return HealthAnswer(status: 503, reason: "status unreadable: \(error)", role: nil)
    }
  }

  /// 200 only on a backup whose updater is at most `maxRTD` seconds behind (and applying:
  /// an updater that stopped with a backlog is behind however recent its RTD looks).
  /// A `max_rtd` that is not a number of seconds ≥ 0 is 400.
  public static func backup(maxRTD text: String?, _ snap: () throws -> NodeSnapshot) -> HealthAnswer {
    var limit = Double.infinity
    if let text {
      guard let v = Double(text), v.isFinite, v >= 0 else {
        return HealthAnswer(status: 400, reason: "max_rtd must be a number of seconds ≥ 0, not '\(text)'", role: nil)
      }
      limit = v
    }
    do {
      let s = try snap()
      guard let b = s.backup else { return HealthAnswer(status: 503, reason: "not a backup", role: s.role.rawValue) }
      if !b.daemonRunning { return HealthAnswer(status: 503, reason: "the daemon is not running", role: "backup") }
      if let stopped = b.updaterStopped {
        return HealthAnswer(status: 503, reason: "updater stopped: \(stopped)", role: "backup")
      }
      if b.updaterStopReached && b.backlogRecords > 0 {
        return HealthAnswer(
          status: 503, reason: "updater held at its stop point with \(b.backlogRecords) records to apply",
          role: "backup")
      }
      if b.rtdUpdater > limit {
        return HealthAnswer(
          status: 503, reason: "updater RTD \(b.rtdUpdater) s exceeds max_rtd \(limit) s", role: "backup")
      }
      return HealthAnswer(status: 200, reason: "updater RTD \(b.rtdUpdater) s", role: "backup")
    } catch {
      return HealthAnswer(status: 503, reason: "status unreadable: \(error)", role: nil)
    }
  }
}
