import CommandAlias

runUnderstudy(as: "rtdr")
