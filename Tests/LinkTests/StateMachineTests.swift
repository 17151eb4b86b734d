// Both sides of the streaming link as state machines, without sockets: the receiver
// groups its syncs by what has arrived and never acks ahead of a sync; the extractor
// checks the chain, waits out damage, sends without a gather wait, and hands over once.
// And the two together through a byte stream in random chunkings (seeded, printed).

import Link
import Node
import XCTest

@testable import AuditTrail

final class ReceiverStateMachineTests: XCTestCase {
  let p = { (rba: UInt64) in MATPosition(sno: 1, rba: rba) }

  func testRecordsAreSyncedOnceNothingMoreIsWaitingThenAcked() {
    var machine = ReceiverStateMachine(syncBytes: 1000)
    XCTAssertEqual(
      machine.received(.records(position: p(64), bytes: [1, 2, 3])), .append(position: p(64), bytes: [1, 2, 3]))
    machine.wrote(8)
    XCTAssertEqual(machine.frameHandled(applied: p(64)), .syncUnlessMoreArriving)
    // More is already waiting: read it first, one sync covers both.
    XCTAssertEqual(machine.moreArriving(true), .receive)
    machine.wrote(8)
    XCTAssertEqual(machine.frameHandled(applied: p(64)), .syncUnlessMoreArriving)
    XCTAssertEqual(machine.moreArriving(false), .sync)
    XCTAssertEqual(machine.unsynced, 16)
    guard case .ack(let acked, let applied) = machine.synced(end: p(80), applied: p(64)) else {
      return XCTFail("no ack after the sync")
    }
    XCTAssertEqual(acked, p(80))
    XCTAssertEqual(applied, p(64))
    XCTAssertEqual(machine.unsynced, 0)
    XCTAssertEqual(machine.frameHandled(applied: p(64)), .receive)
  }

  func testABigBurstIsSyncedWithoutLookingForMore() {
    var machine = ReceiverStateMachine(syncBytes: 100)
    machine.wrote(100)
    XCTAssertEqual(machine.frameHandled(applied: nil), .sync)
  }

  func testTheUpdaterMovingOnIsAckedOnceWhenNothingIsUnsynced() {
    var machine = ReceiverStateMachine(syncBytes: 100)
    _ = machine.synced(end: p(80), applied: nil)  // acks applied = the end when unknown
    XCTAssertEqual(machine.lastSentApplied, p(80))
    XCTAssertEqual(machine.frameHandled(applied: p(80)), .receive)
    XCTAssertEqual(machine.frameHandled(applied: p(96)), .ack(applied: p(96)))
    XCTAssertEqual(machine.frameHandled(applied: p(96)), .receive)
    // With bytes unsynced, the sync comes first and its ack carries the applied position.
    machine.wrote(8)
    XCTAssertEqual(machine.frameHandled(applied: p(104)), .syncUnlessMoreArriving)
  }

  func testOnlyStreamingFramesAreAccepted() {
    let machine = ReceiverStateMachine(syncBytes: 100)
    XCTAssertEqual(
      machine.received(.heartbeat(trailEnd: p(64), newestCommitMicros: 7, sentMicros: 8)),
      .heartbeat(trailEnd: p(64), newestCommitMicros: 7))
    XCTAssertEqual(
      machine.received(.promote(generation: Generation(2), end: p(64))), .promote(generation: Generation(2), end: p(64))
    )
    XCTAssertEqual(
      machine.received(.fileStart(header: [1, 2], size: 65536)), .beginFile(header: [1, 2], size: 65536))
    XCTAssertEqual(machine.received(.copyRequest), .badFrame(reason: "unexpected copy-request frame while streaming"))
  }
}

final class ExtractorStateMachineTests: XCTestCase {
  let timing = ExtractorStateMachine.Timing(corruptionGrace: 2, commitGrace: 0.02, pollInterval: 0.002)
  let p = { (rba: UInt64) in MATPosition(sno: 1, rba: rba) }

  func record(at rba: UInt64, prev: UInt32) -> PositionedRecord {
    let r = Record(type: .commit, txid: TransactionID(1), commitMicros: 1, payload: [1, 2, 3], prevCRC: prev)
    return PositionedRecord(
      record: r, position: p(rba), end: p(rba + UInt64(r.size)), crc: 0, generation: Generation(1))
  }

  func testTheFirstRecordMustContinueTheBackupsChain() {
    var machine = ExtractorStateMachine(from: p(64), lastCRC: 0xAB, now: 0, timing: timing)
    XCTAssertEqual(
      machine.read(record(at: 64, prev: 0xCD)),
      .refuse(
        "the backup's image trail does not match this primary's MAT before 1:64; the backup needs a full copy"))
    var good = ExtractorStateMachine(from: p(64), lastCRC: 0xAB, now: 0, timing: timing)
    XCTAssertEqual(good.read(record(at: 64, prev: 0xAB)), .take)
    XCTAssertEqual(good.read(record(at: 96, prev: 0x12)), .take)  // the reader checks the chain from here
  }

  func testDamageIsCorruptionOnlyOnceItOutlastsTheGrace() {
    var machine = ExtractorStateMachine(from: p(64), lastCRC: nil, now: 0, timing: timing)
    XCTAssertFalse(machine.damaged(now: 10))
    XCTAssertFalse(machine.damaged(now: 11.9))
    _ = machine.read(record(at: 64, prev: 0))  // a good record resets the clock
    XCTAssertFalse(machine.damaged(now: 13))
    XCTAssertFalse(machine.damaged(now: 15))
    XCTAssertTrue(machine.damaged(now: 15.1))
  }

  func testTheCommittedEndOnlyMovesForwardAndPostponesTheLookPastIt() {
    var machine = ExtractorStateMachine(from: p(64), lastCRC: nil, now: 0, timing: timing)
    machine.committed(p(128), now: 1)
    XCTAssertEqual(machine.durable, p(128))
    machine.committed(p(96), now: 2)
    machine.committed(nil, now: 2)
    XCTAssertEqual(machine.durable, p(128))
    XCTAssertFalse(machine.shouldLookPastCommitted(batchIsEmpty: true, now: 1.01))
    XCTAssertFalse(machine.shouldLookPastCommitted(batchIsEmpty: false, now: 1.5))
    XCTAssertTrue(machine.shouldLookPastCommitted(batchIsEmpty: true, now: 1.5))
    XCTAssertFalse(machine.shouldLookPastCommitted(batchIsEmpty: true, now: 1.51))
    machine.syncedPastCommitted(end: p(160))
    XCTAssertEqual(machine.durable, p(160))
  }

  func testNoGatherWaitAfterASend() {
    let machine = ExtractorStateMachine(from: p(64), lastCRC: nil, now: 0, timing: timing)
    XCTAssertEqual(machine.wait(sent: true, watchingCommits: true), 0)
    XCTAssertEqual(machine.wait(sent: true, watchingCommits: false), 0)
    XCTAssertEqual(machine.wait(sent: false, watchingCommits: true), timing.commitGrace)
    XCTAssertEqual(machine.wait(sent: false, watchingCommits: false), timing.pollInterval)
  }

  func testThePromoteGoesOnceTheBackupHasAppliedTheSwitchoverAndOnlyOnce() {
    var machine = ExtractorStateMachine(from: p(64), lastCRC: nil, now: 0, timing: timing)
    XCTAssertEqual(
      machine.received(.promoted(matStart: p(64))), .refuse("unexpected promoted frame while streaming"))
    XCTAssertFalse(machine.shouldPromote(end: p(200)))
    XCTAssertEqual(machine.received(.ack(acked: p(200), applied: p(100))), .acked(acked: p(200), applied: p(100)))
    XCTAssertFalse(machine.shouldPromote(end: p(200)))
    _ = machine.received(.ack(acked: p(200), applied: p(200)))
    XCTAssertTrue(machine.shouldPromote(end: p(200)))
    XCTAssertFalse(machine.shouldPromote(end: p(200)))
    XCTAssertEqual(machine.received(.promoted(matStart: p(64))), .promoted(matStart: p(64)))
    XCTAssertEqual(machine.received(.copyRequest), .refuse("unexpected copy-request frame while streaming"))
  }
}

/// The receiver's machine fed through a `FrameBuffer` from a byte stream cut at random:
/// every record is written once, in order, and every ack covers only synced bytes.
final class LinkStreamTests: XCTestCase {
  func testRecordsThroughRandomChunkingsAreAckedOnlyAfterTheirSync() throws {
    let seed = UInt64(Clock.nowMicros() % 1_000_000)
    print("LinkStreamTests: seed \(seed)")
    var rng = SeededGenerator(seed: seed)
    var wire: [UInt8] = []
    var rba: UInt64 = 64
    var sent: [UInt8] = []
    for i in 0..<300 {
      let bytes = (0..<(8 * Int.random(in: 1...40, using: &rng))).map { _ in UInt8.random(in: 0...255, using: &rng) }
      wire += Message.records(position: MATPosition(sno: 1, rba: rba), bytes: bytes).frame.encoded()
      sent += bytes
      rba += UInt64(bytes.count)
      if i % 50 == 0 {
        wire += Message.heartbeat(trailEnd: MATPosition(sno: 1, rba: rba), newestCommitMicros: 1, sentMicros: 2).frame
          .encoded()
      }
    }
    var buffer = FrameBuffer(peer: "p", maxPayload: Frame.maxStreamPayload)
    var machine = ReceiverStateMachine(syncBytes: 2000)
    var written: [UInt8] = []
    var synced = 0
    var acks: [MATPosition] = []
    var offset = 0
    var syncs = 0
    while offset < wire.count || buffer.buffered > 0 {
      let n = min(wire.count - offset, Int.random(in: 0...3000, using: &rng))
      buffer.append(wire[offset..<(offset + n)])
      offset += n
      while let frame = try buffer.next(limit: { StreamLimits.receiving($0, roomInFile: 1 << 20) }) {
        switch machine.received(try Message(decoding: frame, peer: "p")) {
        case .append(let position, let bytes):
          XCTAssertEqual(position.rba, 64 + UInt64(written.count), "seed \(seed)")
          written += bytes
          machine.wrote(bytes.count)
        case .heartbeat: break
        default: XCTFail("seed \(seed)")
        }
        var step = machine.frameHandled(applied: nil)
        if step == .syncUnlessMoreArriving {
          step = machine.moreArriving(buffer.buffered > 0 || offset < wire.count && rng.next() % 2 == 0)
        }
        if step == .sync {
          synced = written.count
          syncs += 1
          guard
            case .ack(let acked, _) = machine.synced(end: MATPosition(sno: 1, rba: 64 + UInt64(synced)), applied: nil)
          else { return XCTFail("seed \(seed)") }
          XCTAssertLessThanOrEqual(acked.rba, 64 + UInt64(synced), "acked ahead of the sync (seed \(seed))")
          acks.append(acked)
        }
      }
    }
    XCTAssertEqual(written, sent, "seed \(seed)")
    XCTAssertEqual(acks.last, MATPosition(sno: 1, rba: rba), "seed \(seed)")
    XCTAssertLessThan(syncs, 300, "no grouping at all (seed \(seed))")
    XCTAssertEqual(acks, acks.sorted(), "seed \(seed)")
  }
}
