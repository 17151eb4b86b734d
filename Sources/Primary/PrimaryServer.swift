// The primary's daemon: recovers the database to its MAT, then listens on the node's
// `listen` address and runs one extractor per authenticated backup.

import AuditTrail
import Foundation
import Link
import Node

public final class PrimaryServer: @unchecked Sendable {
  public let layout: NodeLayout
  public let config: NodeConfig
  let events: EventLog
  let stop: StopFlag
  let key: [UInt8]
  private let lock = NSLock()
  private var attached: [String: AttachedBackup] = [:]
  private let extractors = DispatchGroup()

  public init(layout: NodeLayout, events: EventLog, stop: StopFlag) throws {
    self.layout = layout
    self.config = try layout.loadConfig()
    self.events = events
    self.stop = stop
    self.key = try Secret.load(path: layout.secretKey)
  }

  /// Runs until `stop` is set. Throws if the node cannot serve at all.
  public func run() throws {
    guard let listen = config.listen else {
      throw NodeError.badConfig(
        path: layout.config,
        reason: "this primary has no listen address; create it with `init primary --listen HOST:PORT`")
    }
    // Bring the database up to its MAT first (cuts a torn tail a crashed writer left).
    try AuditedDatabase.open(node: layout.root).close()
    let listener = try Listener(address: try HostPort(parsing: listen))
    events.log(
      .daemonStarted, "primary daemon serving context '\(config.contextName)' on \(listen)",
      [("listen", .string(listen))])
    while !stop.isSet {
      guard let socket = try listener.accept(timeout: 0.2) else { continue }
      let connection = Link.Connection(socket: socket, maxPayload: Frame.maxControlPayload)
      extractors.enter()
      let thread = Thread { [self] in
        serve(connection)
        extractors.leave()
      }
      thread.name = "extractor \(socket.peer)"
      thread.start()
    }
    // The extractors see the stop flag at their next wait.
    _ = extractors.wait(timeout: .now() + 5)
  }

  func serve(_ link: Link.Connection) {
    let identity = LinkIdentity(
      context: config.contextName, nodeID: config.nodeId, generation: config.generation, key: key)
    do {
      let (peer, _) = try Handshake.accept(link, as: identity)
      guard peer.generation <= config.generation else {
        throw link.refusing(
          "the backup has seen generation \(peer.generation), this primary is at \(config.generation): this node has been taken over"
        )
      }
      events.log(
        .extractorSynchronizing, "extractor establishing synch with backup \(peer.nodeID) at \(link.peer)",
        [("peer", .string(link.peer))])
      let extractor = Extractor(
        layout: layout, link: link, peer: peer, stop: stop, events: events,
        onAck: { [self] backup in
          lock.lock()
          attached[backup.peer] = backup
          lock.unlock()
        })
      var request = try link.receive(timeout: Handshake.stepTimeout)
      if case .copyRequest = request {
        events.log(
          .initialCopyStarted, "sending a snapshot of \(config.database) to \(link.peer)",
          [("peer", .string(link.peer))])
        let position = try extractor.sendSnapshot(database: config.database)
        events.log(
          .initialCopyComplete, "snapshot sent to \(link.peer), consistent with MAT position \(position)",
          [("peer", .string(link.peer)), ("position", position.json)])
        request = try link.receive(timeout: 600)
      }
      guard case .start(let from, let lastCRC) = request else {
        throw link.refusingFrame("expected a start request, got \(request.type)")
      }
      let trailEnd = try NodeStatus.read(node: layout.root).trailEnd
      guard from <= trailEnd else {
        throw link.refusing(
          "the backup's image trail ends at \(from), past this primary's MAT end \(trailEnd): it follows another primary or this MAT lost records"
        )
      }
      events.log(
        .extractorSynchronized, "extractor synch established SNO \(from.sno) RBA \(from.rba) with \(link.peer)",
        [("peer", .string(link.peer)), ("position", from.json)])
      try extractor.stream(from: from, lastCRC: lastCRC)
    } catch let error as LinkError {
      switch error {
      case .badFrame: events.log(.badFrame, "\(error)", [("peer", .string(link.peer))])
      case .refused, .refusedByPeer: events.log(.linkRefused, "\(error)", [("peer", .string(link.peer))])
      default: events.log(.linkDropped, "link to \(link.peer) ended: \(error)", [("peer", .string(link.peer))])
      }
    } catch {
      events.log(
        .extractorStoppedUnexpectedly, "extractor for \(link.peer) stopped: \(error)", [("peer", .string(link.peer))])
      link.refuse("the primary's extractor stopped: \(error)")
    }
    link.socket.shutdown()
    lock.lock()
    attached[link.peer] = nil
    lock.unlock()
  }
}
