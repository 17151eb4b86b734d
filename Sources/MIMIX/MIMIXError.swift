// Every refusal of the MIMIX commands says what is wrong and what to run instead.

import AuditTrail
import Foundation
import Node

public enum MIMIXError: Error, CustomStringConvertible {
  case badContextID(String)
  case badServerName(String)
  case noContext(id: ContextID, home: String, known: [ContextID])
  case badContextFile(path: String, reason: String)
  case contextTaken(id: ContextID, home: String, node: String)
  case isFailoverContext(id: ContextID, of: ContextID)
  case failoverSameAsContext(ContextID)
  case failoverIDTaken(id: ContextID, home: String, by: String)
  case otherFailoverContext(context: ContextID, existing: ContextID, site: String)
  case notSetUp(context: ContextID)
  case unknownServer(name: String, context: ContextID, known: [String])
  case noRecoveryServer(context: ContextID, unnamed: [String])
  case wrongServer(operation: String, context: ContextID, runsOn: String, this: String)
  case notTheSite(context: ContextID, site: String, this: String)
  case interrupted(context: ContextID, operation: String)
  case productionAnswers(context: ContextID, address: String, detail: String)
  case notFailedOver(context: ContextID, operation: String, site: String)
  case siteUnreachable(context: ContextID, site: String, address: String, detail: String)
  case notResynced(context: ContextID, production: String)
  case notCaughtUp(context: ContextID, applied: MATPosition?, end: MATPosition)
  case failbackFirstOnSite(context: ContextID, site: String)
  case drainWithoutBackup(context: ContextID)
  case drainOnBackup(context: ContextID)
  case notFullyStopped(context: ContextID)
  case statemapOnBackup(context: ContextID)
  case notActingProduction(context: ContextID)
  case timedOut(what: String, seconds: Double, detail: String)
  case daemonDidNotStart(node: String, log: String, detail: String)
  case daemonNotRunning(context: ContextID, operation: String)
  case aborted(operation: String)
  case otherServerAhead(context: ContextID, this: String, ahead: [(name: String, end: MATPosition, mine: MATPosition)])

  public var description: String {
    switch self {
    case .badContextID(let text): "'\(text)' is not a context ID: it must be a positive integer (e.g. -C 1)"
    case .badServerName(let name):
      "'\(name)' is not a server name: use letters, digits, '.', '-' and '_' (a host name), at most 255 characters"
    case .noContext(let id, let home, let known):
      "context \(id) is not configured on this server (home \(home); "
        + (known.isEmpty ? "no contexts" : "contexts: \(known.map(\.description).joined(separator: ", "))")
        + "). Create it with `understudy init primary|backup … --context \(id) --name NAME --home \(home)`, or choose the home with --home or UNDERSTUDY_HOME"
    case .badContextFile(let path, let reason): "context file \(path) is unreadable: \(reason)"
    case .contextTaken(let id, let home, let node):
      "context \(id) is already configured on this server (home \(home)) for node \(node); choose another context ID"
    case .isFailoverContext(let id, let of):
      "context \(id) is the failover context of context \(of): run the command with -C \(of)"
    case .failoverSameAsContext(let id):
      "the failover context must have an ID of its own, not \(id) (-F differs from -C)"
    case .failoverIDTaken(let id, let home, let by):
      "context ID \(id) is already used on this server (home \(home)) by \(by); choose a failover context ID unused on both servers"
    case .otherFailoverContext(let context, let existing, let site):
      "context \(context) already has failover context \(existing) (site \(site)); run `rtdr -C \(context) -F \(existing) setup` to refresh it, not another ID"
    case .notSetUp(let context):
      "context \(context) has no failover context: run `rtdr -C \(context) -F <ID> setup` on both servers first (the ID is yours to choose, unused on both)"
    case .unknownServer(let name, let context, let known):
      "'\(name)' is not a recovery server of context \(context); configured: "
        + (known.isEmpty ? "none" : known.joined(separator: ", "))
    case .noRecoveryServer(let context, let unnamed):
      "no named recovery server of context \(context) has connected to this server yet"
        + (unnamed.isEmpty ? "" : " (backups without a name at \(unnamed.joined(separator: ", ")))")
        + ": start it (`rtstart -C \(context)` there) and run setup again"
    case .wrongServer(let operation, let context, let runsOn, let this):
      "`rtdr -C \(context) \(operation)` runs on \(runsOn); this server (\(this)) is not it"
    case .notTheSite(let context, let site, let this):
      "this server (\(this)) is not the failover site of context \(context): \(site) is (chosen with -s at setup). Run failover there, or set up again with `rtdr -C \(context) -F <ID> -s \(this) setup`"
    case .interrupted(let context, let operation):
      "`rtdr -C \(context) \(operation)` was interrupted on this server: run it again to finish it first (re-running is safe)"
    case .productionAnswers(let context, let address, let detail):
      "refusing failover of context \(context): production at \(address) still answers (\(detail)). Two productions would write at once; if production is truly lost to the application, run `rtdr -C \(context) -f failover`; for a planned change use rtdr failback on the acting production"
    case .notFailedOver(let context, let operation, let site):
      "`rtdr -C \(context) \(operation)` comes after a failover, and context \(context) has not failed over to \(site): run `rtdr -C \(context) failover` on \(site) first"
    case .siteUnreachable(let context, let site, let address, let detail):
      "the recovery server \(site) of context \(context) at \(address) does not answer as production (\(detail)). If context \(context) has not failed over, run `rtdr -C \(context) failover` on \(site) first; if it has, start its daemon with `rtstart -C \(context)` there: resync and failback need both servers live"
    case .notResynced(let context, let production):
      "failback before resync: production \(production) is not following this server. Run `rtdr -C \(context) resync` on both servers first"
    case .notCaughtUp(let context, let applied, let end):
      "production has not caught up: it applied \(applied.map(\.description) ?? "nothing yet"), this server's MAT ends at \(end). Wait until `rtdr -C \(context) resync` says in sync, or run `rtdr -C \(context) -f failback` to wait for the drain (at most --timeout seconds)"
    case .failbackFirstOnSite(let context, let site):
      "failback runs first on the recovery server \(site) (the acting production), then here: run `rtdr -C \(context) failback` on \(site)"
    case .drainWithoutBackup(let context):
      "`rtstop -C \(context) -S` drains into a backup, and none is attached: start the recovery server's daemon, or stop without -S"
    case .drainOnBackup(let context):
      "`rtstop -C \(context) -S` runs on the production server (the drain is of what it committed); this server's node is a backup"
    case .notFullyStopped(let context):
      "scconfig -M needs the context fully stopped first: run `rtstop -C \(context) -F`"
    case .statemapOnBackup(let context):
      "scconfig -C \(context) -M marks the statemap on the acting production server; this server's node is a backup"
    case .notActingProduction(let context):
      "scconfig -C \(context) -M marks the statemap on the acting production server, the one `rtdr -C \(context) failover` ran on; context \(context) has not failed over to this server, so no resync would read the mark"
    case .timedOut(let what, let seconds, let detail): "\(what) did not happen within \(Int(seconds)) s: \(detail)"
    case .daemonDidNotStart(let node, let log, let detail):
      "the daemon of node \(node) did not start serving: \(detail) (its output is in \(log))"
    case .daemonNotRunning(let context, let operation):
      "`rtdr -C \(context) \(operation)` needs this server's daemon running (production follows it): start it with `rtstart -C \(context)`, then run the command again"
    case .aborted(let operation): "\(operation) aborted at the prompt: nothing was changed"
    case .otherServerAhead(let context, let this, let ahead):
      "refusing failover of context \(context) to \(this): "
        + ahead.map { "recovery server \($0.name) has received up to \($0.end), more than this server (\($0.mine))" }
        .joined(separator: "; ")
        + ". Failing over here would leave those transactions on \(ahead.map(\.name).joined(separator: ", ")) only, which then needs a full copy; fail over to it instead (`rtdr -C \(context) -F <ID> -s \(ahead[0].name) setup` on every server), or run `rtdr -C \(context) -f failover` here to accept that"
    }
  }
}
