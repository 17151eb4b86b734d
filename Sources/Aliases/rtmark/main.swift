import CommandAlias

runUnderstudy(as: "rtmark")
