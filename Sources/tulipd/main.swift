print("tulipd")
