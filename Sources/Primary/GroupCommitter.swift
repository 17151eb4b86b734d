// Who commits the queued write requests, and when (group commit).
//
// One thread at a time leads: it takes everything queued as one group, and the writer
// runs the group as one SQLite transaction with one MAT write and one fdatasync. A
// synchronous caller that finds nobody leading leads itself, so a lone writer pays no
// thread hand-off. When a group is done, leadership passes to the caller at the front of
// the queue, which commits everything that arrived meanwhile. Each caller waits on its
// own condition: a commit wakes the callers it finished and the next leader, nobody
// else. Requests queued by `submit` have no caller waiting; whoever leads commits them,
// and the writer thread leads when nobody else does.

import Foundation

final class GroupCommitter: @unchecked Sendable {
  // @unchecked: `queue`, `leading`, `closed` and `threadLeads` are guarded by `lock`;
  // `writer` is used only by the leader, one thread at a time.
  private let writer: Writer
  private let lock = NSLock()
  private var queue: [WriteRequest] = []
  /// True while some thread leads. Invariant: a non-empty queue has a leader.
  private var leading = false
  private var closed = false
  /// Leadership was handed to the writer thread.
  private var threadLeads = false
  private let threadWakeup = Wakeup()
  private let threadExited = Wakeup()
  /// Commits and their latency, for the daemon's metrics (CommitStats.swift).
  private let stats: CommitStats

  init(_ writer: Writer) {
    self.writer = writer
    stats = CommitStats(layout: writer.layout)
    let thread = Thread { [self] in run() }  // strong: the thread ends only after close()
    thread.name = "understudy-writer"
    thread.start()
  }

  /// Stops the writer once the queued requests are done. Later requests fail.
  func close() {
    lock.lock()
    let alreadyClosed = closed
    closed = true
    let idle = !leading
    lock.unlock()
    if alreadyClosed {
      return
    }
    if idle { threadWakeup.signal() }  // otherwise the last leader wakes it
    threadExited.wait()
    stats.flush()
  }

  func write<T>(_ body: (Transaction) throws -> T) throws -> (value: T, commit: CommitInfo?) {
    try withoutActuallyEscaping(body) { body in
      var value: T?
      let waiter = Waiter()
      let request = WriteRequest(work: .transaction { value = try body($0) }, waiter: waiter)
      let commit = try runSynchronously(request, waiter).get()  // before `value`, which a failed body never set
      return (value!, commit)
    }
  }

  /// Runs `body` with the writer to itself, between groups.
  func exclusive<T>(_ body: (Writer) throws -> T) throws -> T {
    try withoutActuallyEscaping(body) { body in
      var value: Result<T, Error>?
      let waiter = Waiter()
      let request = WriteRequest(work: .exclusive { writer in value = Result { try body(writer) } }, waiter: waiter)
      _ = try runSynchronously(request, waiter).get()
      return try value!.get()
    }
  }

  /// Queues a request for whoever leads (callers that must not block).
  func enqueue(_ request: WriteRequest) throws {
    if try append(request, leadToThread: true) { threadWakeup.signal() }
  }

  /// Queues `request`, leads if nobody does or when handed the lead, and waits for it.
  private func runSynchronously(_ request: WriteRequest, _ waiter: Waiter) throws -> Result<CommitInfo?, Error> {
    let lead = try append(request, leadToThread: false)
    if lead || waiter.waitForTurn() == .lead { leadGroups() }
    return waiter.waitForOutcome()
  }

  /// Queues `request`. True if nobody was leading: the lead is now the caller's, or
  /// with `leadToThread` the writer thread's.
  private func append(_ request: WriteRequest, leadToThread: Bool) throws -> Bool {
    lock.lock()
    defer { lock.unlock() }
    guard !closed else { throw PrimaryError.closed }
    queue.append(request)
    guard !leading else { return false }
    leading = true
    threadLeads = leadToThread
    return true
  }

  /// Commits groups until the queue is empty or its front has a caller to lead it.
  private func leadGroups() {
    while true {
      lock.lock()
      let group = takeGroup()
      lock.unlock()
      if case .exclusive(let body) = group[0].work {
        body(writer)
        group[0].finish(.success(nil))
      } else {
        writer.commit(group)
        let now = DispatchTime.now().uptimeNanoseconds
        stats.record(group.filter(\.committed).map { Double(now - $0.queued) / 1e9 })
      }
      lock.lock()
      guard let next = queue.first else {
        leading = false
        let wakeThread = closed
        lock.unlock()
        if wakeThread { threadWakeup.signal() }
        return
      }
      lock.unlock()
      if let waiter = next.waiter {
        waiter.handLead()
        return
      }
    }
  }

  /// With the lock held: the front of the queue, a run of transactions or one exclusive request.
  private func takeGroup() -> [WriteRequest] {
    if case .exclusive = queue[0].work { return [queue.removeFirst()] }
    let count = queue.firstIndex { if case .exclusive = $0.work { true } else { false } } ?? queue.count
    let group = Array(queue[..<count])
    queue.removeFirst(count)
    return group
  }

  private func run() {
    while true {
      threadWakeup.wait()
      lock.lock()
      if threadLeads {
        threadLeads = false
        lock.unlock()
        leadGroups()
        continue
      }
      let exit = closed && !leading
      lock.unlock()
      if exit {
        writer.shutdown()
        threadExited.signal()
        return
      }
    }
  }
}

/// A synchronous caller's place to wait: for the lead, or for its outcome.
final class Waiter: @unchecked Sendable {
  // @unchecked: the state is guarded by `condition`.
  enum Turn { case waiting, lead, done }
  private let condition = NSCondition()
  private var turn = Turn.waiting
  private var outcome: Result<CommitInfo?, Error>?

  func handLead() {
    condition.lock()
    if turn == .waiting { turn = .lead }
    condition.signal()
    condition.unlock()
  }

  func finish(_ result: Result<CommitInfo?, Error>) {
    condition.lock()
    outcome = result
    turn = .done
    condition.signal()
    condition.unlock()
  }

  func waitForTurn() -> Turn {
    condition.lock()
    defer { condition.unlock() }
    while turn == .waiting { condition.wait() }
    return turn
  }

  func waitForOutcome() -> Result<CommitInfo?, Error> {
    condition.lock()
    defer { condition.unlock() }
    while outcome == nil { condition.wait() }
    return outcome!
  }
}

/// A wake-up call that is not lost if it comes before the wait.
final class Wakeup: @unchecked Sendable {
  // @unchecked: `pending` is guarded by `condition`.
  private let condition = NSCondition()
  private var pending = false

  func signal() {
    condition.lock()
    pending = true
    condition.signal()
    condition.unlock()
  }

  func wait() {
    condition.lock()
    while !pending { condition.wait() }
    pending = false
    condition.unlock()
  }
}

final class ResultBox<T>: @unchecked Sendable {
  // @unchecked: written by the committing thread before the continuation resumes, read after.
  var value: T?
}

final class WriteRequest: @unchecked Sendable {
  // @unchecked: `work` runs once, on the leading thread, while its submitter waits.
  enum Work {
    case transaction((Transaction) throws -> Void)
    case exclusive((Writer) -> Void)
  }
  private(set) var work: Work
  /// The synchronous caller waiting for this request; nil for `submit`.
  let waiter: Waiter?
  private let completion: ((Result<CommitInfo?, Error>) -> Void)?
  /// When it was queued (monotonic nanoseconds), and whether it ended in a commit: its latency.
  let queued = DispatchTime.now().uptimeNanoseconds
  private(set) var committed = false

  init(work: Work, waiter: Waiter) {
    self.work = work
    self.waiter = waiter
    completion = nil
  }

  init(body: @escaping (Transaction) throws -> Void, completion: @escaping (Result<CommitInfo?, Error>) -> Void) {
    work = .transaction(body)
    waiter = nil
    self.completion = completion
  }

  func run(_ transaction: Transaction) throws {
    if case .transaction(let body) = work { try body(transaction) }
  }

  /// Reports the outcome, having first let go of the work: a synchronous caller lends
  /// its non-escaping closure and may return as soon as it hears back.
  func finish(_ result: Result<CommitInfo?, Error>) {
    work = .transaction { _ in }
    if case .success(.some) = result { committed = true }
    if let waiter {
      waiter.finish(result)
    } else {
      completion?(result)
    }
  }
}
