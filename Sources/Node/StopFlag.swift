// A stop request shared by a daemon's threads: set once by a signal or a fatal error,
// seen by every loop at its next wait (all waits are bounded).

import Foundation

public final class StopFlag: @unchecked Sendable {
  private let lock = NSLock()
  private var reason: String?

  public init() {}

  public func stop(_ why: String) {
    lock.lock()
    if reason == nil { reason = why }
    lock.unlock()
  }

  public var isSet: Bool {
    lock.lock()
    defer { lock.unlock() }
    return reason != nil
  }

  public var why: String? {
    lock.lock()
    defer { lock.unlock() }
    return reason
  }

  /// Sleeps up to `seconds`, returning early once stopped.
  public func sleep(_ seconds: Double) {
    let until = Date().addingTimeInterval(seconds)
    while !isSet && Date() < until { usleep(UInt32(min(0.02, max(0, until.timeIntervalSinceNow)) * 1_000_000)) }
  }
}
