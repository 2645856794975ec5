# placeholder
print("tricolor")
