// Records leave a trail exactly as they lie in it (the same bytes at the same `sno:rba`):
// one records frame per run of adjacent records in one file, each file announced with
// its header before its first run. The extractor ships its MAT this way, a relaying
// backup its image trail, and a new primary the old generation's records a backup lacks.

import AuditTrail
import Node

public struct TrailShipment {
  public let directory: TrailDirectory
  /// The file the receiving side is in: the last one announced.
  public private(set) var announced: UInt32?

  /// A reader from where the receiving side's trail ends, or the link refused: when that
  /// position is not in `directory`, or the record before it is not the one the receiving
  /// side has (`lastCRC`). `mine` names this side's trail ("this primary's MAT"), `theirs`
  /// the receiving side ("the backup").
  public static func reader(
    _ directory: TrailDirectory, from: MATPosition, lastCRC: UInt32?, on link: Connection, mine: String,
    theirs: String
  ) throws -> TrailReader {
    let reader: TrailReader
    do {
      reader = try TrailReader(directory: directory, from: from)
    } catch {
      throw link.refusing("\(theirs)'s position \(from) is not in \(mine) (\(error)); \(theirs) needs a full copy")
    }
    if let lastCRC, let seed = reader.lastCRC, seed != lastCRC {
      throw link.refusing(
        "\(theirs)'s image trail does not match \(mine) at \(from) (chain seed differs); \(theirs) needs a full copy")
    }
    return reader
  }

  public init(directory: TrailDirectory, announced: UInt32? = nil) {
    self.directory = directory
    self.announced = announced
  }

  /// Announces file `sno` (its header and size), as the first message of a stream.
  public mutating func announce(sno: UInt32) throws -> Message {
    let (header, size) = try directory.headerAndSize(sno: sno)
    announced = sno
    return .fileStart(header: header, size: UInt64(size))
  }

  /// The commit time of the newest record sent, for the heartbeat (RTD).
  public private(set) var newestCommit: Int64 = 0
  private var lastHeartbeat = 0.0

  /// Sends `batch`, then a heartbeat saying the stream has reached `trailEnd` if the last
  /// one is `interval` seconds old. Returns whether it sent one.
  public mutating func send(
    _ batch: [PositionedRecord], reaching trailEnd: MATPosition, on link: Connection, heartbeatEvery interval: Double
  ) throws -> Bool {
    if !batch.isEmpty {
      try link.send(try messages(for: batch))
      newestCommit = batch.last!.record.commitMicros
    }
    let now = Clock.monotonicSeconds()
    guard now - lastHeartbeat >= interval else { return false }
    try link.send(.heartbeat(trailEnd: trailEnd, newestCommitMicros: newestCommit, sentMicros: Clock.nowMicros()))
    lastHeartbeat = now
    return true
  }

  /// The messages that carry `batch`, records in trail order.
  public mutating func messages(for batch: [PositionedRecord]) throws -> [Message] {
    var messages: [Message] = []
    var run: (start: MATPosition, end: MATPosition)?
    func flush() throws {
      guard let r = run, r.end.rba > r.start.rba else { return }
      let bytes = try directory.readBytes(sno: r.start.sno, at: r.start.rba, count: Int(r.end.rba - r.start.rba))
      messages.append(.records(position: r.start, bytes: bytes))
      run = nil
    }
    for record in batch {
      if record.position.sno != announced || record.position != run?.end {
        try flush()
        if record.position.sno != announced { messages.append(try announce(sno: record.position.sno)) }
      }
      run = (run?.start ?? record.position, record.end)
    }
    try flush()
    return messages
  }
}
