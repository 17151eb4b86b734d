// Appends records to a trail: one write and one fdatasync per batch, so concurrent
// writers share a sync. Files are preallocated with written zeros and created whole
// (temp, sync, rename), so a trail file never exists half-made.

import Foundation

/// A record to append; the writer assigns its position and chain.
public struct PendingRecord: Sendable {
  public var type: RecordType
  public var txid: TransactionID
  public var commitMicros: Int64
  public var payload: [UInt8]

  public init(type: RecordType, txid: TransactionID, commitMicros: Int64, payload: [UInt8]) {
    self.type = type
    self.txid = txid
    self.commitMicros = commitMicros
    self.payload = payload
  }
}

/// Where an appended record landed.
public struct AppendedRecord: Sendable, Equatable {
  public var position: MATPosition
  public var end: MATPosition
  public var crc: UInt32
}

public final class TrailWriter {
  public let directory: TrailDirectory
  public let nodeID: NodeID
  public let generation: Generation
  /// Size of a new file; a record larger than that gets a file of its own size.
  public let fileSize: Int
  /// Where the next record goes. Everything before it is durable.
  public private(set) var end: MATPosition
  /// The CRC of the last record written (the next record's `prevCRC`).
  public private(set) var lastCRC: UInt32
  private var file: FileHandle
  private var fileLength: Int
  private var failure: String?

  /// Starts a new trail (or a new generation's first file) at `sno`.
  public static func create(
    directory: TrailDirectory, nodeID: NodeID, generation: Generation, sno: UInt32 = 1, chainSeed: UInt32 = 0,
    fileSize: Int = TrailFormat.defaultFileSize
  ) throws -> TrailWriter {
    let header = FileHeader(
      sno: sno, nodeID: nodeID, generation: generation, createdMicros: Clock.nowMicros(), chainSeed: chainSeed)
    try DurableFile.create(path: directory.filePath(sno: sno), contents: header.encoded(), zeroFill: fileSize)
    return try TrailWriter(
      directory: directory, nodeID: nodeID, generation: generation, fileSize: fileSize,
      end: MATPosition(sno: sno, rba: TrailFormat.firstRBA), lastCRC: chainSeed)
  }

  /// Continues a trail whose clean end (found by a reader, torn tail cut) is `end`.
  public init(
    directory: TrailDirectory, nodeID: NodeID, generation: Generation, fileSize: Int, end: MATPosition,
    lastCRC: UInt32
  ) throws {
    self.directory = directory
    self.nodeID = nodeID
    self.generation = generation
    self.fileSize = max(fileSize, TrailFormat.fileHeaderSize + TrailFormat.recordHeaderSize)
    self.end = end
    self.lastCRC = lastCRC
    let path = directory.filePath(sno: end.sno)
    file = try FileHandle(path: path, flags: O_RDWR)
    fileLength = try file.size()
    let header = try directory.open(sno: end.sno).header
    guard header.nodeID == nodeID else {
      throw TrailError.badFile(file: path, reason: "written by node \(header.nodeID), this node is \(nodeID)")
    }
  }

  /// Whether another writer appended at or past `end` (the next record's header is not
  /// zero, or a later file exists). A pread and an access per group commit.
  public func hasRecordsPastEnd() throws -> Bool {
    try directory.somethingWritten(at: end, in: file, size: fileLength)
  }

  /// Appends the records in order and makes them durable before returning.
  ///
  /// On failure nothing is reported committed: bytes already written are zeroed again
  /// where possible; if even that fails the writer refuses further appends, and the
  /// next open's recovery decides from what is on disk.
  @discardableResult
  public func append(_ records: [PendingRecord]) throws -> [AppendedRecord] {
    if let failure { throw TrailError.writerFailed(reason: failure) }
    if let big = records.first(where: { $0.payload.count > TrailFormat.maxPayload }) {
      throw TrailError.recordTooLarge(txid: big.txid, bytes: big.payload.count)
    }
    let startEnd = end
    let startCRC = lastCRC
    var written: [(FileHandle, Int, Int)] = []  // file, offset, count: what to undo on failure
    var results: [AppendedRecord] = []
    results.reserveCapacity(records.count)
    do {
      var buffer: [UInt8] = []
      var bufferStart = Int(end.rba)
      for pending in records {
        let size = TrailFormat.recordSize(payloadCount: pending.payload.count)
        if Int(end.rba) + size > fileLength {
          try flush(&buffer, at: bufferStart, into: &written)
          try file.syncData()
          try rollOver(minimumSize: TrailFormat.fileHeaderSize + size)
          bufferStart = Int(end.rba)
        }
        let record = Record(
          type: pending.type, txid: pending.txid, commitMicros: pending.commitMicros, payload: pending.payload,
          prevCRC: lastCRC)
        let bytes = record.encoded()
        let crc = bytes.readLE(UInt32.self, at: 4)
        let position = end
        buffer.append(contentsOf: bytes)
        end.rba += UInt64(size)
        lastCRC = crc
        results.append(AppendedRecord(position: position, end: end, crc: crc))
      }
      try flush(&buffer, at: bufferStart, into: &written)
      try file.syncData()
      Failpoint.reached("after-trail-sync")
      return results
    } catch {
      undo(written, error: error, startEnd: startEnd, startCRC: startCRC)
      throw error
    }
  }

  private func flush(_ buffer: inout [UInt8], at offset: Int, into written: inout [(FileHandle, Int, Int)]) throws {
    guard !buffer.isEmpty else { return }
    written.append((file, offset, buffer.count))
    if Failpoint.isArmed("torn-trail-write") && buffer.count >= 2 {
      try file.write(Array(buffer[0..<(buffer.count / 2)]), at: offset)
      Failpoint.reached("torn-trail-write")
    }
    try file.write(buffer, at: offset)
    buffer.removeAll(keepingCapacity: true)
  }

  private func undo(_ written: [(FileHandle, Int, Int)], error: Error, startEnd: MATPosition, startCRC: UInt32) {
    do {
      for (handle, offset, count) in written {
        try handle.write([UInt8](repeating: 0, count: count), at: offset)
        try handle.syncData()
      }
      // Files created by a roll-over during this batch go too: the trail ends where it did.
      if startEnd.sno != end.sno {
        for sno in (startEnd.sno + 1)...end.sno { unlink(directory.filePath(sno: sno)) }
        try DurableFile.syncDirectory(directory.path)
        file = try FileHandle(path: directory.filePath(sno: startEnd.sno), flags: O_RDWR)
        fileLength = try file.size()
      }
      end = startEnd
      lastCRC = startCRC
    } catch let undoError {
      failure = "an append failed (\(error)) and its bytes could not be removed (\(undoError))"
    }
  }

  private func rollOver(minimumSize: Int) throws {
    if Failpoint.isArmed("slow-roll-over") { usleep(100_000) }
    let sno = end.sno + 1
    let size = max(fileSize, minimumSize)
    let header = FileHeader(
      sno: sno, nodeID: nodeID, generation: generation, createdMicros: Clock.nowMicros(), chainSeed: lastCRC)
    let path = directory.filePath(sno: sno)
    try DurableFile.create(path: path, contents: header.encoded(), zeroFill: size)
    file = try FileHandle(path: path, flags: O_RDWR)
    fileLength = size
    end = MATPosition(sno: sno, rba: TrailFormat.firstRBA)
  }
}

public enum Clock {
  /// Wall-clock microseconds since 1970: commit times in records.
  public static func nowMicros() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
  }

  /// Monotonic seconds, for measuring durations.
  public static func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
  }
}
