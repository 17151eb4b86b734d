import CommandAlias

runUnderstudy(as: "rtstop")
