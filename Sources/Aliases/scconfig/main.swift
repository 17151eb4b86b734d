import CommandAlias

runUnderstudy(as: "scconfig")
