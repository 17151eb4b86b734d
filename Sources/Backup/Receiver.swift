// The receiver: connects to the primary, proves the key, and owns the restart
// position. It tells the extractor where its image trail ends, writes what arrives at
// the same `sno:rba`, syncs, and only then acknowledges and lets the updater see it. A
// gap, overlap or bad record ends the connection; the next one restarts from the image
// trail's own end. A dropped link is retried with backoff.

import Apply
import AuditTrail
import Foundation
import Link
import Node
import SQLiteSupport

final class Receiver: @unchecked Sendable {
  let layout: NodeLayout
  let events: EventLog
  let stop: StopFlag
  let progress: BackupProgress
  let key: [UInt8]
  let showProgress: Bool

  /// Sync and acknowledge at least this often while data keeps arriving.
  static let syncBytes = 4 << 20
  /// The primary heartbeats every half second; silence this long means the link is dead.
  static let silence = 5.0

  init(layout: NodeLayout, events: EventLog, stop: StopFlag, progress: BackupProgress, showProgress: Bool) throws {
    self.layout = layout
    self.events = events
    self.stop = stop
    self.progress = progress
    self.key = try Secret.load(path: layout.secretKey)
    self.showProgress = showProgress
  }

  func run() {
    events.log(.receiverStarted, "receiver started")
    var backoff = 0.1
    while !stop.isSet {
      let config: NodeConfig
      established = false
      do {
        config = try layout.loadConfig()
        try session(config: config)
        backoff = 0.1
      } catch let error as LinkError {
        if established { backoff = 0.1 }
        progress.update {
          $0.connected = false
          $0.lastError = "\(error)"
        }
        switch error {
        case .refused, .refusedByPeer:
          events.log(.linkRefused, "\(error)")
          backoff = max(backoff, 2)
        case .badFrame:
          events.log(.badFrame, "\(error); reconnecting from the image trail's end")
        default:
          if !stop.isSet { events.log(.linkDropped, "\(error); reconnecting") }
        }
      } catch let error as ImageTrailProblem {
        if established { backoff = 0.1 }
        progress.update {
          $0.connected = false
          $0.lastError = "\(error)"
        }
        events.log(.badFrame, "\(error); restarting the stream from the image trail's end")
      } catch {
        progress.update {
          $0.connected = false
          $0.lastError = "\(error)"
        }
        events.log(.receiverStoppedUnexpectedly, "receiver error: \(error); retrying")
        backoff = max(backoff, 2)
      }
      stop.sleep(backoff)
      backoff = min(backoff * 2, 5)
    }
  }

  /// One connection, from handshake to the link's end.
  func session(config initial: NodeConfig) throws {
    var config = initial
    guard let primaryAddress = config.primary else {
      throw NodeError.badConfig(path: layout.config, reason: "this backup has no primary address")
    }
    let socket = try Socket.connect(to: try HostPort(parsing: primaryAddress), timeout: 5)
    let link = Link.Connection(socket: socket, maxPayload: Frame.maxStreamPayload)
    defer { socket.shutdown() }
    let peer = try Handshake.connect(
      link,
      as: LinkIdentity(config, key: key))
    guard peer.generation >= config.generation else {
      throw link.refusing(
        "the primary at \(primaryAddress) is at generation \(peer.generation), older than this backup's \(config.generation)"
      )
    }
    // So that the primary can learn of a takeover by this node (event 829).
    if let listen = config.listen { try link.send(.listening(address: listen, server: config.server)) }

    if !FileManager.default.fileExists(atPath: config.database) {
      try InitialCopy(
        layout: layout, config: config, link: link, peer: peer, events: events, stop: stop, progress: progress,
        show: showProgress
      )
      .run()
      // The copy took the primary's generation into the config: a switchover later in this
      // session must see it (it was refused as from generation 0, and retried 2 s later).
      config = try layout.loadConfig()
    }
    let state = try CommitState.read(databaseAt: config.database)
    guard state.nodeID == peer.origin else {
      throw link.refusing(
        "this backup follows node \(state.nodeID), but the \(peer.isRelay ? "relay" : "primary") at \(primaryAddress) serves node \(peer.origin)"
          + (peer.isRelay ? " (it is node \(peer.nodeID), a backup)" : ""))
    }
    let (image, cut) = try ImageTrailWriter.open(directory: layout.image, last: state.last, applied: state.end)
    if cut > 0 {
      events.log(.imageTailCut, "cut \(cut) bytes of an incomplete write at the image trail's end \(image.end)")
    }
    progress.update {
      $0.acked = image.end
      $0.applied = $0.applied ?? state.end
    }
    if let last = state.last, image.end == state.end { image.refetchLast(at: last, txid: state.lastTxid) }
    try link.send(.start(from: image.end, lastCRC: image.lastCRC))
    events.log(
      .linkConnected,
      (peer.isRelay
        ? "connected to relay \(peer.nodeID) (a backup of primary \(peer.origin)) at \(primaryAddress)"
        : "connected to primary \(peer.nodeID) at \(primaryAddress)") + ", streaming from \(image.end)",
      [("position", image.end.json)])
    progress.update {
      $0.relayedBy = peer.isRelay ? peer.nodeID : nil
      $0.connected = true
      $0.lastError = nil
      $0.lastFrameMicros = Clock.nowMicros()
    }
    established = true

    // However the session ends (stopping, or the link dropped mid-burst), what was written
    // is synced and counts as received: whole, checked records the primary had made
    // durable. Left unsynced, the next hop of a cascade and `rtdr`'s comparison of the
    // recovery servers would not see them, though takeover and the updater would.
    defer {
      if (try? image.sync()) != nil {
        // Never back: a refetch of the last record starts one record before the end.
        progress.update { $0.acked = max($0.acked ?? image.end, image.end) }
      }
      progress.update { $0.connected = false }
    }
    try stream(link: link, image: image, peer: peer, config: config)
  }

  /// Carries out what the link's state machine decides, frame by frame, until the link
  /// ends: writes to the image trail, syncs (group commit: once nothing more is
  /// waiting), acks after each sync, and a promotion.
  private func stream(link: Link.Connection, image: ImageTrailWriter, peer: LinkPeer, config: NodeConfig) throws {
    var machine = ReceiverStateMachine(syncBytes: Self.syncBytes)
    var newestWritten: Int64 = 0  // commit time of the newest record written, for RTD
    while !stop.isSet {
      // A header claiming more than a legitimate primary can send here is refused at once.
      let message = try link.receive(timeout: Self.silence) {
        StreamLimits.receiving($0, roomInFile: image.roomInFile)
      }
      progress.frameArrived()
      switch machine.received(message) {
      case .beginFile(let header, let size):
        try image.beginFile(header: header, size: size)
      case .append(let position, let bytes):
        let appended = try image.append(position: position, bytes: bytes)
        machine.wrote(bytes.count)
        newestWritten = appended.newestCommitMicros
      case .promote(let generation, let end):
        try promote(to: generation, end: end, from: peer, config: config, link: link)
        return
      case .heartbeat(let end, let newest):
        progress.update {
          $0.primaryTrailEnd = end
          if newest > 0 { $0.primaryNewestCommitMicros = newest }
        }
      case .badFrame(let reason):
        throw LinkError.badFrame(peer: link.peer, reason: reason)
      }
      var step = machine.frameHandled(applied: progress.snapshot.applied)
      if step == .syncUnlessMoreArriving { step = machine.moreArriving(try link.socket.waitReadable(timeout: 0)) }
      switch step {
      case .receive, .syncUnlessMoreArriving:
        break
      case .sync:
        try image.sync()
        let end = image.end
        let newest = newestWritten
        progress.update {
          $0.acked = end
          $0.ackedCommitMicros = newest
          if newest > $0.primaryNewestCommitMicros { $0.primaryNewestCommitMicros = newest }
        }
        try link.send(machine.synced(end: end, applied: progress.snapshot.applied))
      case .ack(let applied):
        try link.send(.ack(acked: image.end, applied: applied))
      }
    }
  }

  /// Whether the current session got as far as streaming (then a drop retries at once).
  private var established = false

  /// The primary committed to a switchover to this node, whose record the updater has
  /// applied: become the primary of `generation`. The decision is journaled first
  /// (`state/promotion.json`), so a kill mid-way is finished by the next start.
  func promote(
    to generation: Generation, end: MATPosition, from peer: LinkPeer, config: NodeConfig, link: Link.Connection
  )
    throws
  {
    let state = try CommitState.read(databaseAt: config.database)
    var named = false
    if let last = state.last, case .record(let r) = try TrailReader(directory: layout.image, from: last).next(),
      r.record.type == .switchover, let payload = SwitchoverPayload(decoding: r.record.payload)
    {
      named = payload.newPrimary == config.nodeId && payload.generation == generation
    }
    guard generation == config.generation.next, state.end == end, named else {
      throw link.refusing(
        "cannot become the primary of generation \(generation): this backup (generation \(config.generation)) has applied up to \(state.end), and the switchover record naming it ends at \(end)"
      )
    }
    let checksum = try DatabaseChecksum.current(databaseAt: config.database).checksum
    let base = NodeConfig.GenerationBase(
      generation: generation, matStart: try Promotion.freshSegment(layout, after: end), priorNode: peer.nodeID,
      priorTxid: state.lastTxid, priorEnd: end, checksum: checksum)
    try PromotionJournal(base: base, complete: false).save(layout)
    try PromotionJournal.finish(layout, events: events)
    try link.send(.promoted(matStart: base.matStart))
    stop.stop("switchover: now the primary of generation \(generation)")
  }
}

/// A backup's promotion in a switchover, decided and not yet finished.
public struct PromotionJournal: Codable, Sendable {
  public var base: NodeConfig.GenerationBase
  public var complete: Bool

  static func path(_ layout: NodeLayout) -> String { layout.state + "/promotion.json" }

  func save(_ layout: NodeLayout) throws { try StateFile.write(self, to: Self.path(layout)) }

  /// Finishes a decided promotion (again, if a kill interrupted it).
  public static func finish(_ layout: NodeLayout, events: EventLog) throws {
    guard var journal = try StateFile.read(PromotionJournal.self, at: path(layout)), !journal.complete else { return }
    try Promotion.promote(layout, to: journal.base)
    journal.complete = true
    try journal.save(layout)
    events.log(
      .switchoverComplete,
      "switchover: this node is now the primary of generation \(journal.base.generation), its MAT from \(journal.base.matStart); checksum \(journal.base.checksum)",
      [
        ("generation", .int(Int64(journal.base.generation.rawValue))), ("position", journal.base.matStart.json),
        ("checksum", .string(journal.base.checksum)),
      ])
  }
}
