// A backup with a listen address answers context queries and follow hints there while
// it runs as a backup, and relays its image trail to next hops that stream from it (a
// cascade, `Relay`). Before a failover, `rtdr` on the chosen recovery server asks
// the other recovery servers how far they have received, so that one holding more than
// the new production is named, not silently left behind (RDF's triple contingency).
// After it, the new primary tells them where it serves and how its generation began: a
// backup whose database is exactly that base follows it without a copy (NodeDaemon).

import Apply
import AuditTrail
import Foundation
import Link
import Node

final class QueryListener: @unchecked Sendable {
  // @unchecked: `attached` is read and written under `lock`; the rest is set once.
  let layout: NodeLayout
  let config: NodeConfig
  let events: EventLog
  let stop: StopFlag
  let progress: BackupProgress
  let relay: Relay
  private let lock = NSLock()
  /// The next hops streaming from this backup now, by connection.
  private var attached: [String: ContextAnswer.Backup] = [:]

  init(layout: NodeLayout, config: NodeConfig, events: EventLog, stop: StopFlag, progress: BackupProgress, relay: Relay)
  {
    self.layout = layout
    self.config = config
    self.events = events
    self.stop = stop
    self.progress = progress
    self.relay = relay
  }

  /// Serves until `stop` is set, each connection on its own thread (a next hop's stream
  /// lasts). A port it cannot have is logged, not fatal: the backup's own work does not
  /// depend on it.
  func run() {
    guard let listen = config.listen, let address = try? HostPort(parsing: listen) else { return }
    let listener: Listener
    let key: [UInt8]
    do {
      listener = try Listener(address: address)
      key = try Secret.load(path: layout.secretKey)
    } catch {
      events.log(.linkDropped, "the backup cannot answer context queries on \(listen): \(error)")
      return
    }
    let connections = DispatchGroup()
    // Connections not yet authenticated: bounded in number and time, as on a primary.
    let gate = AdmissionGate()
    while !stop.isSet {
      gate.sweep()
      gate.logDropped(events)
      guard let socket = try? listener.accept(timeout: 0.2) else { continue }
      let ticket = gate.admit(socket)
      connections.enter()
      let thread = Thread { [self] in
        serve(Link.Connection(socket: socket, maxPayload: Frame.maxControlPayload), key: key) {
          gate.passed(ticket)
        }
        gate.leave(ticket)
        connections.leave()
      }
      thread.name = "relay \(socket.peer)"
      thread.start()
    }
    _ = connections.wait(timeout: .now() + 5)
  }

  private func serve(_ link: Link.Connection, key: [UInt8], authenticated: () -> Void) {
    defer {
      link.socket.shutdown()
      lock.lock()
      attached[link.peer] = nil
      lock.unlock()
    }
    var hop = false
    do {
      // As of now: a first start's initial copy sets the generation after this began.
      let config = try layout.loadConfig()
      let origin =
        FileManager.default.fileExists(atPath: config.database)
        ? try CommitState.read(databaseAt: config.database).nodeID : nil
      let me = LinkIdentity(config, key: key).relaying(origin)
      let (peer, _) = try Handshake.accept(link, as: me)
      authenticated()
      var request = try link.receive(timeout: Handshake.stepTimeout)
      switch request {
      case .contextQuery: return try link.send(.contextAnswer(answer(config)))
      case .followHint(let hint): return try take(hint, from: peer, config: config, on: link)
      case .baseQuery, .followRequest:
        // An old primary's probe, or a node that took this for a primary.
        return link.refuse("this node is a backup: it has no generation base and accepts no follower")
      default: hop = true
      }
      // A next hop: it streams from here as from a primary, in this generation only.
      guard origin != nil else {
        throw link.refusing("this backup has no database yet (its initial copy has not run): it cannot relay")
      }
      if case .listening(let address, let server) = request {
        try Fencing.remember(KnownBackup(node: peer.nodeID, listen: address, server: server), layout)
        request = try link.receive(timeout: Handshake.stepTimeout)
      }
      // A copy takes this relay's generation; a stream continues one in it.
      let copying = request.type == .copyRequest
      guard peer.generation == config.generation || (copying && peer.generation < config.generation) else {
        throw link.refusing(
          "the next hop is at generation \(peer.generation), this relay at \(config.generation): "
            + (peer.generation < config.generation
              ? "it follows an older history and needs `understudy follow` (or a full copy)"
              : "it has seen a newer generation than this relay; point it at that generation's primary"))
      }
      let relayed = ContextAnswer.Backup(
        node: peer.nodeID, server: nil, listen: nil, attached: true, acked: nil, applied: nil)
      lock.lock()
      attached[link.peer] = relayed
      lock.unlock()
      if case .copyRequest = request {
        try relay.sendCopy(to: peer, on: link, config: config)
        request = try link.receive(timeout: 600)
      }
      guard case .start(let from, let lastCRC) = request else {
        throw link.refusingFrame("expected a start request, got \(request.type)")
      }
      try relay.stream(to: peer, from: from, lastCRC: lastCRC, on: link)
    } catch let error as LinkError {
      // Probes and queries end with the asker hanging up: only a next hop's end is news.
      guard hop else { return }
      switch error {
      case .refused, .refusedByPeer: events.log(.linkRefused, "\(error)", [("peer", .string(link.peer))])
      case .badFrame: events.log(.badFrame, "\(error)", [("peer", .string(link.peer))])
      default: break  // a query's caller hangs up; a next hop's drop it retries itself
      }
    } catch {
      events.log(.linkDropped, "relay to \(link.peer) ended: \(error)", [("peer", .string(link.peer))])
      link.refuse("the relay stopped: \(error)")
    }
  }

  /// Where this backup stands: what it received and applied, whom it follows, and the
  /// next hops it relays to (those that said where they serve, and those streaming now).
  private func answer(_ config: NodeConfig) throws -> ContextAnswer {
    let s = progress.snapshot
    let received = s.acked ?? s.applied ?? MATPosition(sno: 1, rba: TrailFormat.firstRBA)
    let known = try Fencing.knownBackups(layout)
    lock.lock()
    let streaming = Array(attached.values)
    lock.unlock()
    var hops = known.map { k in
      ContextAnswer.Backup(
        node: k.node, server: k.server, listen: k.listen, attached: streaming.contains { $0.node == k.node },
        acked: nil, applied: nil)
    }
    for s in streaming where !known.contains(where: { $0.node == s.node }) { hops.append(s) }
    return ContextAnswer(
      server: config.server, node: config.nodeId, role: .backup, generation: config.generation,
      durableEnd: received, base: nil, fileRecovery: nil, noFileRecovery: nil, statemap: .clean, backups: hops,
      applied: s.applied, primary: config.primary)
  }

  /// Only from the primary of a newer generation (it proved the key), about itself.
  private func take(_ hint: FollowHint, from peer: LinkPeer, config: NodeConfig, on link: Link.Connection) throws {
    guard hint.generation > config.generation, peer.generation == hint.generation, peer.nodeID == hint.node,
      hint.base.generation == hint.generation, (try? HostPort(parsing: hint.address)) != nil
    else {
      throw link.refusing(
        "a follow hint must come from the primary of a newer generation than this backup's \(config.generation), about itself"
      )
    }
    try StateFile.write(hint, to: FollowHintFile.path(layout))
    events.log(
      .followHinted,
      "generation \(hint.generation) began at \(hint.base.priorEnd) on node \(peer.nodeID) at \(hint.address): this backup follows it if its database is exactly that base",
      [("listen", .string(hint.address)), ("generation", .int(Int64(hint.generation.rawValue)))])
    try link.send(.contextAnswer(answer(config)))
    stop.stop("a new primary at \(hint.address) (generation \(hint.generation))")
  }
}

/// Where a backup keeps a follow hint until its daemon has acted on it.
public enum FollowHintFile {
  public static func path(_ layout: NodeLayout) -> String { layout.state + "/follow-hint.json" }

  public static func read(_ layout: NodeLayout) throws -> FollowHint? {
    try StateFile.read(FollowHint.self, at: path(layout))
  }

  public static func remove(_ layout: NodeLayout) {
    unlink(path(layout))
  }
}
