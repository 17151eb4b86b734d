// A backup with a listen address answers context queries and follow hints there while
// it runs as a backup, and nothing else. Before a failover, `rtdr` on the chosen recovery server asks
// the other recovery servers how far they have received, so that one holding more than
// the new production is named, not silently left behind (RDF's triple contingency).
// After it, the new primary tells them where it serves and how its generation began: a
// backup whose database is exactly that base follows it without a copy (NodeDaemon).

import AuditTrail
import Foundation
import Link
import Node

final class QueryListener: Sendable {
  let layout: NodeLayout
  let config: NodeConfig
  let events: EventLog
  let stop: StopFlag
  let progress: BackupProgress

  init(layout: NodeLayout, config: NodeConfig, events: EventLog, stop: StopFlag, progress: BackupProgress) {
    self.layout = layout
    self.config = config
    self.events = events
    self.stop = stop
    self.progress = progress
  }

  /// Serves until `stop` is set. A port it cannot have is logged, not fatal: the
  /// backup's own work does not depend on it.
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
    while !stop.isSet {
      guard let socket = try? listener.accept(timeout: 0.2) else { continue }
      let link = Link.Connection(socket: socket, maxPayload: Frame.maxControlPayload)
      do {
        // As of now: a first start's initial copy sets the generation after this began.
        let config = try layout.loadConfig()
        let me = LinkIdentity(config, key: key)
        let (peer, _) = try Handshake.accept(link, as: me)
        switch try link.receive(timeout: Handshake.stepTimeout) {
        case .contextQuery: break
        case .followHint(let hint):
          // Only from the primary of that newer generation (it proved the key), about itself.
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
          stop.stop("a new primary at \(hint.address) (generation \(hint.generation))")
        default:
          throw link.refusing("this node is a backup: it answers context queries only, and serves no stream")
        }
        let s = progress.snapshot
        let received = s.acked ?? s.applied ?? MATPosition(sno: 1, rba: TrailFormat.firstRBA)
        try link.send(
          .contextAnswer(
            ContextAnswer(
              server: config.server, node: config.nodeId, role: .backup, generation: config.generation,
              durableEnd: received, base: nil, fileRecovery: nil, noFileRecovery: nil, statemap: .clean, backups: [],
              applied: s.applied, primary: config.primary)))
      } catch {
        // A failed handshake or query ends that one connection; the backup goes on.
      }
      link.socket.shutdown()
    }
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
