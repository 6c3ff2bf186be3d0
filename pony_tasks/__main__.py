from pony_tasks.cli import main

main()
