import CommandAlias

runUnderstudy(as: "scrt_ra")
