// SQLite's automatic checkpoint runs inside the COMMIT that finds the WAL past 1000
// frames: that commit copies pages into the database and syncs both files while its
// writer waits. Here the writer's connection only reports the WAL's length, and a thread
// with a connection of its own runs a PASSIVE checkpoint, which never blocks a writer.

import Foundation
import SQLiteSupport

final class Checkpointer: @unchecked Sendable {
  // @unchecked: `connection` is used by the checkpoint thread only; the flags are
  // guarded by `condition`.
  private let connection: Connection
  private let threshold: Int
  private let condition = NSCondition()
  private var requested = false
  private var stopping = false
  private var running = true

  /// Takes over checkpointing of `writer`'s database once its WAL holds `threshold` frames.
  init(writer: Connection, threshold: Int = 1000) throws {
    connection = try Connection(path: writer.path)
    self.threshold = threshold
    writer.setWALHook { [weak self] frames in
      guard let self, frames >= self.threshold else { return }
      self.condition.lock()
      self.requested = true
      self.condition.signal()
      self.condition.unlock()
    }
    let thread = Thread { [self] in run() }  // strong: the thread ends only after stop()
    thread.name = "understudy-checkpoint"
    thread.start()
  }

  /// Ends the thread; an unfinished checkpoint is finished first.
  func stop() {
    condition.lock()
    stopping = true
    condition.signal()
    while running { condition.wait() }
    condition.unlock()
  }

  private func run() {
    condition.lock()
    while true {
      while !requested && !stopping { condition.wait() }
      if stopping { break }
      requested = false
      condition.unlock()
      // A failed checkpoint loses nothing: the frames stay in the WAL for the next one.
      try? connection.checkpointPassive()
      condition.lock()
    }
    running = false
    condition.broadcast()
    condition.unlock()
  }
}
