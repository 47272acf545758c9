from control_plane.cli import main

main(prog_name="cplane")
