// The primary's daemon: recovers the database to its MAT, then listens on the node's
// `listen` address and runs one extractor per authenticated backup.

import Apply
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
  /// Connections not yet authenticated: bounded in number and time.
  private let gate = AdmissionGate()
  private let purger: MATPurger

  public init(layout: NodeLayout, events: EventLog, stop: StopFlag) throws {
    self.layout = layout
    self.config = try layout.loadConfig()
    self.events = events
    self.stop = stop
    self.key = try Secret.load(path: layout.secretKey)
    self.purger = try MATPurger(layout: layout, config: config, events: events)
  }

  /// Runs until `stop` is set. Throws if the node cannot serve at all.
  public func run() throws {
    guard let listen = config.listen else {
      throw NodeError.badConfig(
        path: layout.config,
        reason: "this primary has no listen address; create it with `init primary --listen HOST:PORT`")
    }
    if let superseded = config.superseded { throw FencingError.superseded(node: layout.root, superseded) }
    // Bring the database up to its MAT first (cuts a torn tail a crashed writer left).
    try AuditedDatabase.open(node: layout.root).close()
    // Taken over while this daemon was down? Then it must not serve at all.
    if let (peer, address) = try Fencing.findNewerGeneration(layout, config, refused: noteRefusal) {
      let updated = try Fencing.supersede(
        layout, generation: peer.generation, by: peer.nodeID, address: address, events: events)
      throw FencingError.superseded(node: layout.root, updated.superseded!)
    }
    let listener = try Listener(address: try HostPort(parsing: listen))
    events.log(
      .daemonStarted, "primary daemon serving context '\(config.contextName)' on \(listen)",
      [("listen", .string(listen))])
    var lastProbe = Clock.monotonicSeconds()
    while !stop.isSet {
      if isSuperseded { break }
      if Clock.monotonicSeconds() - lastProbe >= Self.probeInterval {
        lastProbe = Clock.monotonicSeconds()
        if attachedCount == 0,
          let (peer, address) = try Fencing.findNewerGeneration(layout, config, refused: noteRefusal)
        {
          try newerGeneration(peer, address: address)
          break
        }
      }
      publishAttached()
      if WriteBlock.liftOrphaned(layout) {
        events.log(.writeBlockLifted, "writes allowed again: the process that blocked them is gone")
      }
      do {
        try purger.tick()
      } catch {
        // Nothing is removed that is needed; a failure only keeps more (a full disk stays full).
        events.log(.fileError, "the MAT purge failed: \(error)")
      }
      gate.sweep()
      gate.logDropped(events)
      guard let socket = try listener.accept(timeout: 0.2) else { continue }
      let connection = Link.Connection(socket: socket, maxPayload: Frame.maxControlPayload)
      let ticket = gate.admit(socket)
      extractors.enter()
      let thread = Thread { [self] in
        serve(connection, ticket: ticket)
        extractors.leave()
      }
      thread.name = "extractor \(socket.peer)"
      thread.start()
    }
    // The extractors see the stop flag at their next wait.
    _ = extractors.wait(timeout: .now() + 5)
    try? FileManager.default.removeItem(atPath: Self.attachedPath(layout))
    if let superseded = try layout.loadConfig().superseded {
      throw FencingError.superseded(node: layout.root, superseded)
    }
  }

  /// The attached backups and their acknowledgements, for `status` and `switchover`
  /// (`state/attached.json`, rewritten when it changes; `switchover` decides on it).
  private var published: [AttachedBackup]?
  private func publishAttached() {
    lock.lock()
    let now = attached.values.sorted { $0.peer < $1.peer }
    lock.unlock()
    guard now != published else { return }
    published = now
    do {
      try StateFile.write(now, to: Self.attachedPath(layout))
    } catch {
      events.log(.fileError, "cannot record the attached backups in \(Self.attachedPath(layout)): \(error)")
    }
  }

  public static func attachedPath(_ layout: NodeLayout) -> String { layout.state + "/attached.json" }

  /// No file: no daemon runs, or none has had a backup attached since it started.
  public static func readAttached(_ layout: NodeLayout) throws -> [AttachedBackup] {
    try StateFile.read([AttachedBackup].self, at: attachedPath(layout)) ?? []
  }

  /// Each refused claim of a newer generation is logged once per daemon run (9070); the
  /// probe repeats every few seconds.
  private var refusedClaims: Set<String> = []
  private func noteRefusal(_ refusal: Fencing.Refusal) {
    lock.lock()
    let new = refusedClaims.insert("\(refusal.peer.nodeID) \(refusal.peer.generation) \(refusal.reason)").inserted
    lock.unlock()
    if new { Fencing.log(refusal, events) }
  }

  /// The backup took over in a planned switchover: record it and stop serving; the
  /// daemon then makes this node its backup.
  func promoted(_ peer: LinkPeer, at start: MATPosition?) {
    let journal: SwitchoverJournal?
    do {
      journal = try SwitchoverJournal.read(layout)
    } catch {
      events.log(.fileError, "cannot read the switchover's journal: \(error)")
      stop.stop("switchover journal unreadable")
      return
    }
    guard var plan = journal, plan.target == peer.nodeID else { return }
    plan.phase = .promoted
    do {
      try plan.save(layout)
    } catch {
      events.log(.fileError, "cannot record the switchover's progress: \(error)")
    }
    events.log(
      .switchoverCommitted,
      "switchover: node \(peer.nodeID) is now the primary of generation \(plan.generation); this node follows it",
      [("generation", .int(Int64(plan.generation.rawValue)))])
    stop.stop("switchover to generation \(plan.generation)")
  }

  /// While no backup is attached, ask the known backups this often whether one took over.
  static let probeInterval = 2.0

  private var attachedCount: Int {
    lock.lock()
    defer { lock.unlock() }
    return attached.count
  }

  private var isSuperseded: Bool {
    lock.lock()
    defer { lock.unlock() }
    return supersededFlag
  }
  private var supersededFlag = false

  /// A node of a newer generation showed itself: the backup this node switched over to
  /// (whose answer the link lost), or else a takeover, which fences this node.
  func newerGeneration(_ peer: LinkPeer, address: String?) throws {
    if let plan = try SwitchoverJournal.read(layout), plan.phase == .committed || plan.phase == .promoted,
      plan.target == peer.nodeID, plan.generation == peer.generation
    {
      if plan.phase == .committed { promoted(peer, at: nil) }
      stop.stop("switchover to generation \(plan.generation)")
    } else {
      try supersede(generation: peer.generation, by: peer.nodeID, address: address)
    }
  }

  /// A newer generation exists: block writes, log 829, and stop every extractor.
  func supersede(generation: Generation, by: NodeID?, address: String?) throws {
    lock.lock()
    supersededFlag = true
    lock.unlock()
    try Fencing.supersede(layout, generation: generation, by: by, address: address, events: events)
    stop.stop("superseded by generation \(generation)")
  }

  func serve(_ link: Link.Connection, ticket: Int) {
    let identity = LinkIdentity(config, key: key)
    var authenticated = false
    do {
      let (peer, _) = try Handshake.accept(link, as: identity)
      gate.passed(ticket)
      authenticated = true
      guard peer.generation <= config.generation else {
        // A generation announced on the link is a claim, not evidence: only a known
        // backup that answers as the next primary with this node's MAT as its base is.
        if let (proven, address) = try Fencing.findNewerGeneration(layout, config, refused: noteRefusal) {
          try newerGeneration(proven, address: address)
          throw link.refusing(
            "the backup has seen generation \(peer.generation), this primary is at \(config.generation): this node has been taken over"
          )
        }
        noteRefusal(
          .init(
            peer: peer, address: link.peer,
            reason:
              "it announced that generation on the link as a backup, and no backup this node knows answers as the primary of generation \(config.generation.next) with a base in this node's MAT"
          ))
        throw link.refusing(
          "this backup announces generation \(peer.generation), but the primary of generation \(config.generation) has no evidence of a newer generation: refused (event 9070). If this backup took over, start it as a primary on its listen address"
        )
      }
      var request = try link.receive(timeout: Handshake.stepTimeout)
      if case .baseQuery = request { return try answerBaseQuery(from: peer, on: link) }
      if case .contextQuery = request { return try answerContextQuery(from: peer, on: link) }
      if case .listening(let address, let server) = request {
        try Fencing.remember(KnownBackup(node: peer.nodeID, listen: address, server: server), layout)
        request = try link.receive(timeout: Handshake.stepTimeout)
      }
      if case .followRequest(let follow) = request {
        return try answer(follow, from: peer, on: link)
      }
      events.log(
        .extractorSynchronizing, "extractor establishing synch with backup \(peer.nodeID) at \(link.peer)",
        [("peer", .string(link.peer))])
      let extractor = Extractor(
        layout: layout, link: link, peer: peer, stop: stop, events: events,
        onAck: { [self] backup in
          lock.lock()
          attached[backup.peer] = backup
          if let acked = backup.acked { try? purger.note(backup.nodeID, needs: acked) }  // known: no write
          lock.unlock()
        })
      extractor.onPromoted = { [self] start in promoted(peer, at: start) }
      let copied = request.type == .copyRequest
      if case .copyRequest = request {
        events.log(
          .initialCopyStarted, "sending a snapshot of \(config.database) to \(link.peer)",
          [("peer", .string(link.peer))])
        // Kept for from before the snapshot's position, so nothing it needs goes meanwhile.
        if let committed = try CommitState.read(databaseAt: config.database).last {
          try purger.note(peer.nodeID, needs: committed)
        }
        let position = try extractor.sendSnapshot(database: config.database)
        try purger.note(peer.nodeID, needs: position)
        events.log(
          .initialCopyComplete, "snapshot sent to \(link.peer), consistent with MAT position \(position)",
          [("peer", .string(link.peer)), ("position", position.json)])
        request = try link.receive(timeout: 600)
      }
      guard case .start(let from, let lastCRC) = request else {
        throw link.refusingFrame("expected a start request, got \(request.type)")
      }
      let trailEnd = try NodeStatus.read(node: layout.root).trailEnd
      let segmentStart = config.matStart ?? MATPosition(sno: 1, rba: TrailFormat.firstRBA)
      if from < segmentStart, peer.generation < config.generation, let base = config.generationBase,
        base.generation == config.generation, from < base.priorEnd, layout.image.fileExists(sno: from.sno)
      {
        return try sendCatchUp(from: from, to: base.priorEnd, on: link)
      }
      guard from >= segmentStart else {
        throw link.refusing(
          "the backup asks for \(from), before this primary's MAT of generation \(config.generation), which starts at \(segmentStart): it follows an older history and needs `understudy follow` (or a full copy)"
        )
      }
      guard from <= trailEnd else {
        throw link.refusing(
          "the backup's image trail ends at \(from), past this primary's MAT end \(trailEnd): it follows another primary or this MAT lost records"
        )
      }
      // The copy arrived whole (the backup checked it before asking to stream): a dirty
      // statemap has had its complete resync.
      if copied, try Statemap.read(layout).dirty {
        try Statemap.markClean(layout)
        events.log(
          .statemapClean, "statemap clean again: \(link.peer) received a complete copy",
          [("peer", .string(link.peer))])
      }
      events.log(
        .extractorSynchronized, "extractor synch established SNO \(from.sno) RBA \(from.rba) with \(link.peer)",
        [("peer", .string(link.peer)), ("position", from.json)])
      // Only a position this MAT still holds: a dropped backup's retry is refused below,
      // and must not register it again.
      if layout.mat.fileExists(sno: from.sno) { try purger.note(peer.nodeID, needs: from) }
      try extractor.stream(from: from, lastCRC: lastCRC)
    } catch let error as LinkError {
      let log = { [self] in
        switch error {
        case .badFrame: events.log(.badFrame, "\(error)", [("peer", .string(link.peer))])
        case .refused, .refusedByPeer, .tls: events.log(.linkRefused, "\(error)", [("peer", .string(link.peer))])
        default: events.log(.linkDropped, "link to \(link.peer) ended: \(error)", [("peer", .string(link.peer))])
        }
      }
      // Before the proof, anyone can end a connection: the gate bounds what that logs.
      if authenticated { log() } else { gate.failed(ticket, peer: link.peer, log) }
    } catch {
      events.log(
        .extractorStoppedUnexpectedly, "extractor for \(link.peer) stopped: \(error)", [("peer", .string(link.peer))])
      link.refuse("the primary's extractor stopped: \(error)")
    }
    gate.leave(ticket)
    link.socket.shutdown()
    lock.lock()
    attached[link.peer] = nil
    lock.unlock()
  }

  /// Another backup of the primary this node took over from holds less than this node
  /// did at takeover: it is sent the records it lacks, from this node's image trail (the
  /// same bytes at the same positions) up to the generation's base, then told it is
  /// caught up. It then follows this primary with a follow request like any other.
  private func sendCatchUp(from: MATPosition, to end: MATPosition, on link: Link.Connection) throws {
    events.log(
      .extractorSynchronized, "sending \(link.peer) the old generation's records from \(from) to \(end) (image trail)",
      [("peer", .string(link.peer)), ("position", from.json)])
    let reader = try TrailReader(directory: layout.image, from: from)
    var shipment = TrailShipment(directory: layout.image)
    var batch: [PositionedRecord] = []
    var bytes = 0
    while case .record(let record) = try reader.next(), record.end <= end {
      batch.append(record)
      bytes += record.record.size
      if bytes >= 512 << 10 || record.end == end {
        try link.send(try shipment.messages(for: batch))
        (batch, bytes) = ([], 0)
      }
      if record.end == end { break }
    }
    if !batch.isEmpty { try link.send(try shipment.messages(for: batch)) }
    link.refuse("caught up to \(end), the base of generation \(config.generation): now follow this primary")
  }

  /// An old primary asks how this generation began, before it accepts being superseded.
  private func answerBaseQuery(from peer: LinkPeer, on link: Link.Connection) throws {
    guard let base = config.generationBase, base.generation == config.generation else {
      throw link.refusing(
        "this primary's generation \(config.generation) did not begin with a takeover or switchover: it has no base")
    }
    try link.send(.base(base))
    link.socket.shutdown()
  }

  /// An `rtdr` procedure asks where this primary stands in its context.
  private func answerContextQuery(from peer: LinkPeer, on link: Link.Connection) throws {
    let current = try layout.loadConfig()
    let base = current.generationBase.flatMap { $0.generation == current.generation ? $0 : nil }
    let known = try Fencing.knownBackups(layout)
    lock.lock()
    let now = Array(attached.values)
    lock.unlock()
    var backups = known.map { k in
      let a = now.first { $0.nodeID == k.node }
      return ContextAnswer.Backup(
        node: k.node, server: k.server, listen: k.listen, attached: a != nil, acked: a?.acked, applied: a?.applied)
    }
    for a in now where !known.contains(where: { $0.node == a.nodeID }) {
      backups.append(
        .init(node: a.nodeID, server: nil, listen: nil, attached: true, acked: a.acked, applied: a.applied))
    }
    let answer = ContextAnswer(
      server: current.server, node: current.nodeId, role: current.role, generation: current.generation,
      durableEnd: try NodeStatus.read(node: layout.root).durableEnd, base: base, fileRecovery: base?.fileRecovery,
      noFileRecovery: base?.noFileRecovery, statemap: try Statemap.read(layout), backups: backups)
    try link.send(.contextAnswer(answer))
    link.socket.shutdown()
  }

  /// A node recovered to this generation's base asks to follow: it may if its database
  /// is exactly what this generation started from (position, transaction and checksum).
  private func answer(_ follow: Message.FollowRequest, from peer: LinkPeer, on link: Link.Connection) throws {
    guard let base = config.generationBase, base.generation == config.generation else {
      throw link.refusing(
        "this primary's generation \(config.generation) did not begin with a takeover or switchover, so no database can follow it without a full copy: run `understudy follow --full-copy`"
      )
    }
    let statemap = try Statemap.read(layout)
    if statemap.dirty {
      throw link.refusing(
        "the statemap of this primary is dirty (\(statemap.why ?? "marked")): the follower's data is not trusted, a full copy is needed: `understudy follow --full-copy`"
      )
    }
    let mine =
      "node \(base.priorNode) at \(base.priorEnd) after transaction \(base.priorTxid), checksum \(base.checksum)"
    let theirs =
      "node \(follow.priorNode) at \(follow.priorEnd) after transaction \(follow.priorTxid), checksum \(follow.checksum)"
    guard
      follow.priorNode == base.priorNode && follow.priorEnd == base.priorEnd && follow.priorTxid == base.priorTxid
        && follow.checksum == base.checksum
    else {
      throw link.refusing(
        "the follower's database is not the base of generation \(base.generation): generation \(base.generation) began from \(mine); the follower holds \(theirs). A full copy is needed: `understudy follow --full-copy`"
      )
    }
    try link.send(.followAccept(matStart: base.matStart))
    link.socket.shutdown()
    events.log(
      .followed,
      "node \(peer.nodeID) at \(link.peer) proved its database is the base of generation \(base.generation); it may follow from \(base.matStart)",
      [("peer", .string(link.peer)), ("position", base.matStart.json)])
  }
}
