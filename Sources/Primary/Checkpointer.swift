// SQLite's automatic checkpoint runs inside the COMMIT that finds the WAL past 1000
// frames: that commit copies pages into the database and syncs both files while its
// writer waits. Here the writer's connection only reports the WAL's length, and a thread
// with a connection of its own runs a PASSIVE checkpoint, which never blocks a writer.
//
// But SQLite starts the WAL over only when a write transaction begins with every frame
// already copied, and a checkpoint running beside a busy writer never catches up: under
// steady load the WAL grew without end (half a gigabyte in a 20-second benchmark). So
// once it passes `restartFrames` the writer itself, between two transactions, copies
// the few frames the thread has not, and its next transaction starts the WAL over.

import Foundation
import SQLiteSupport

final class Checkpointer: @unchecked Sendable {
  // @unchecked: `connection` is used by the checkpoint thread only; `stopping` is set
  // before the wake-up and read after it, which the wake-up's lock orders.
  private let connection: Connection
  private let wakeup = Wakeup()
  private let exited = Wakeup()
  private var stopping = false

  /// Takes over checkpointing of `writer`'s database once its WAL holds `threshold`
  /// frames, and has the writer finish one when the WAL holds `restartFrames`.
  init(writer: Connection, threshold: Int = 1000, restartFrames: Int = 4000) throws {
    connection = try Connection(path: writer.path)
    writer.setWALHook { [wakeup, unowned writer] frames in
      if frames >= restartFrames {
        try? writer.checkpointPassive()  // a failure leaves the frames for the next commit
      } else if frames >= threshold {
        wakeup.signal()
      }
    }
    let thread = Thread { [self] in run() }  // strong: the thread ends only after stop()
    thread.name = "understudy-checkpoint"
    thread.start()
  }

  /// Ends the thread; an unfinished checkpoint is finished first.
  func stop() {
    stopping = true
    wakeup.signal()
    exited.wait()
  }

  private func run() {
    while true {
      wakeup.wait()
      if stopping { break }
      // A failed checkpoint loses nothing: the frames stay in the WAL for the next one.
      try? connection.checkpointPassive()
    }
    exited.signal()
  }
}
