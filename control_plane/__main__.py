from control_plane.cli.entry import main

main()
