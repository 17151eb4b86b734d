import CommandAlias

runUnderstudy(as: "rtstart")
